"""The sink contract: what an index must do for the pipeline and for search."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from pi_framework.contract.documents import Chunk


class SinkError(RuntimeError):
    """The sink could not do what was asked (unreachable, mapping mismatch, ...)."""


@dataclass
class WriteResult:
    """Outcome of a bulk write: ids confirmed in the index, the reason for each id that is not, and the ids a versioned
    write left alone because the index holds a newer version (``superseded``: not an error, a newer writer won)."""

    written: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    superseded: list[str] = field(default_factory=list)


#: the chunk-metadata key holding the user Plane's guest rule compares with (an issue's creator, a page's owner)
CREATED_BY = "created_by"

#: the chunk-metadata keys sinks index for filtering (Plane's filters): each holds a string or a list of strings.
#: A source sets the ones it has (work items: all of them); a chunk without a key never matches a filter on it.
FILTER_KEYS = ("state", "state_group", "priority", "labels", "assignees", "project_id", "project_identifier")


def filter_values(metadata: dict[str, Any], key: str) -> list[str]:
    """The values of filter key *key* in a chunk's *metadata*, as strings (``[]`` when absent)."""
    value = metadata.get(key)
    if value is None:
        return []
    values = value if isinstance(value, list | tuple) else [value]
    return [str(item) for item in values if item is not None and not isinstance(item, dict | list)]


@dataclass(frozen=True)
class Filters:
    """Plane's filters, applied inside each sink like the access filter. Within a field any value matches (OR), across
    fields every field given must match (AND); ``None`` leaves a field unfiltered and an empty list matches nothing.

    * ``state``: state names (``"In Progress"``); ``state_group``: ``backlog``, ``unstarted``, ``started``,
      ``completed``, ``cancelled``; ``priority``: ``urgent``, ``high``, ``medium``, ``low``, ``none``;
    * ``labels``: label names (an item with any of them); ``assignees``: user ids (an item assigned to any of them);
    * ``project``: project ids or identifiers (``WEB``).

    Values compare exactly (case included), as Plane stores them.
    """

    state: Sequence[str] | None = None
    state_group: Sequence[str] | None = None
    priority: Sequence[str] | None = None
    labels: Sequence[str] | None = None
    assignees: Sequence[str] | None = None
    project: Sequence[str] | None = None

    #: filter field -> the metadata keys (:data:`FILTER_KEYS`) it matches, any of them
    KEYS: ClassVar[dict[str, tuple[str, ...]]] = {
        "state": ("state",),
        "state_group": ("state_group",),
        "priority": ("priority",),
        "labels": ("labels",),
        "assignees": ("assignees",),
        "project": ("project_id", "project_identifier"),
    }

    @classmethod
    def of(cls, filters: Filters | Mapping[str, Sequence[str] | str | None] | None) -> Filters | None:
        """*filters* as :class:`Filters` (a mapping's keys are the field names; a single string is one value)."""
        if filters is None or isinstance(filters, Filters):
            return filters
        unknown = set(filters) - set(cls.KEYS)
        if unknown:
            raise ValueError(f"unknown filter(s) {', '.join(sorted(unknown))}; known: {', '.join(cls.KEYS)}")
        return cls(**{name: [values] if isinstance(values, str) else values for name, values in filters.items()})

    def clauses(self) -> list[tuple[tuple[str, ...], list[str]]]:
        """``(metadata keys, values)`` of every field given: a chunk passes when, for each clause, one of its keys holds
        one of the values. What sinks translate into their query."""
        return [
            (keys, sorted({str(value) for value in values}))
            for name, keys in self.KEYS.items()
            if (values := getattr(self, name)) is not None
        ]

    def matches(self, metadata: dict[str, Any]) -> bool:
        """Whether a chunk with this *metadata* passes (the rule sinks implement)."""
        for keys, values in self.clauses():
            if not any(value in values for key in keys for value in filter_values(metadata, key)):
                return False
        return True

    def __bool__(self) -> bool:
        return bool(self.clauses())


@dataclass
class SearchQuery:
    """A query against one sink. Every query is filtered, inside the sink, by:

    * workspace: chunks of ``workspace_id`` and global chunks (no workspace); with ``workspace_member`` False only
      global chunks (the user is not an active member of the workspace);
    * privacy: a private chunk (``owner_id`` set) matches only when ``user_id`` is its owner;
    * projects: a project-scoped chunk (non-empty ``project_ids``) matches only when one of its projects is in
      ``projects``, or is in ``guest_projects`` and the chunk's ``created_by`` metadata is ``user_id``. The default
      (no projects) keeps every project-scoped chunk out; ``projects=None`` turns the project filter off (operators).
    """

    workspace_id: str
    text: str = ""
    vector: Sequence[float] | None = None
    kinds: Sequence[str] | None = None
    user_id: str | None = None
    limit: int = 10
    projects: Sequence[str] | None = ()
    guest_projects: Sequence[str] = ()
    workspace_member: bool = True
    filters: Filters | None = None

    def project_allowed(self, project_ids: Sequence[str], created_by: str | None) -> bool:
        """Whether a chunk with these ``project_ids`` and creator passes the project filter (the rule sinks implement)."""
        if self.projects is None or not project_ids:
            return True
        if not set(project_ids).isdisjoint(self.projects):
            return True
        return self.user_id is not None and created_by == self.user_id and not set(project_ids).isdisjoint(self.guest_projects)

    def allows(self, hit: Hit) -> bool:
        """Whether *hit* passes every filter of this query (search's second line of defence after the sink's)."""
        if hit.workspace_id is not None and (hit.workspace_id != self.workspace_id or not self.workspace_member):
            return False
        if hit.owner_id is not None and hit.owner_id != self.user_id:
            return False
        if self.kinds is not None and hit.kind not in self.kinds:
            return False
        if self.filters is not None and not self.filters.matches(hit.metadata):
            return False
        return self.project_allowed(hit.project_ids, hit.metadata.get(CREATED_BY))


@dataclass
class Hit:
    chunk_id: str
    document_id: str
    kind: str
    score: float
    title: str = ""
    key: str | None = None
    url: str | None = None
    text: str = ""
    workspace_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    project_ids: list[str] = field(default_factory=list)
    owner_id: str | None = None


@runtime_checkable
class Sink(Protocol):
    """An index. Every method is required (the core calls each one); the built-in sinks
    (:class:`~pi_framework.sinks.embedded.EmbeddedSink`, ``OpenSearchSink``) are complete examples, and
    :class:`~pi_framework.testing.sink_contract.SinkContract` proves a sink honours this contract."""

    name: str

    def ensure_ready(self, dimension: int) -> None:
        """Create indices/tables if absent; raise :class:`SinkError` if present with another vector dimension."""

    def write(self, chunks: Sequence[Chunk], version: int | None = None) -> WriteResult:
        """Upsert chunks (with vectors) by id. Never raises for a single bad item: it lands in ``failed``.

        **Versioned (fencing).** With a *version*, a chunk stored with a larger version is neither replaced nor
        touched: its id lands in ``superseded``. The same or a larger version replaces it; the
        pipeline writes with its lease's fencing token, so a writer that lost its lease never puts an older version
        back. ``None`` writes unconditionally (tools that rewrite chunks in place)."""

    def update_metadata(self, updates: Sequence[tuple[str, dict[str, Any]]], version: int | None = None) -> WriteResult:
        """Partial update: replace the ``metadata`` of stored chunks (``(chunk id, new metadata)`` pairs), and every field
        the sink derives from it (the :data:`FILTER_KEYS`, ``created_by``), leaving text, vector and the other fields as
        they are; nothing is embedded. The pipeline sends it when only a document's metadata changed (a work item's
        state, priority, labels, assignees). Never raises for a single item: a chunk the index does not hold lands in
        ``failed`` (the pipeline then writes it in full).

        **Versioned** like :meth:`write`: with a *version*, a chunk stored (or deleted, a tombstone) with a larger
        version is left as it is and lands in ``failed`` ("stale update refused"); the same or a larger version updates
        it and the chunk then holds *version*. ``None`` updates unconditionally and keeps the stored version."""

    def delete_chunks(self, chunk_ids: Sequence[str], version: int | None = None) -> None:
        """Remove chunks by id (missing ids are not an error); with a *version*, never a chunk stored with a larger one."""

    def delete_documents(self, document_ids: Sequence[str], version: int | None = None) -> int:
        """Remove every chunk of these documents, found by the chunks' ``document_id`` (not by ids the ledger knows):
        chunks an interrupted run wrote but never recorded go too. Missing documents are not an error; return how
        many chunks were removed. The pipeline deletes documents only this way. With a *version*, a chunk stored with
        a larger version stays (as in :meth:`delete_chunks`)."""

    def read_chunks(
        self, *, documents: Sequence[str] | None = None, workspace_id: str | None = None, global_chunks: bool = False
    ) -> Iterator[Chunk]:
        """Stream the stored chunks, vectors and versions included, of the documents named (``documents``), of every
        document of one workspace (``workspace_id``) or of every global chunk (no workspace; ``global_chunks=True``);
        exactly one of the three is given. Chunks come in pages, never all at once; a ``content_hash`` the sink does not
        keep is ``""``. For tools that move chunks without re-embedding them, and for building an index generation."""

    def for_generation(self, generation: str) -> Sink:
        """This sink (same connection settings) storing into index generation *generation* (``[a-z0-9]+``), beside this
        one and sharing nothing with it: OpenSearch indices named for it, another embedded file. A model change builds
        the new generation there while this one serves (see :mod:`pi_framework.sync.generations`)."""

    def drop(self) -> None:
        """Remove everything this sink stores (its indices or file): an index generation that was replaced."""

    def delete_workspace(self, workspace_id: str, kind: str | None = None) -> int:
        """Remove every chunk of a workspace (optionally of one kind); return how many were removed."""

    def count(self, workspace_id: str | None = None, kind: str | None = None) -> int:
        """Number of chunks, optionally of one workspace and/or kind."""

    def existing(self, chunk_ids: Sequence[str]) -> set[str]:
        """Which of *chunk_ids* are in the index."""

    def search_text(self, query: SearchQuery) -> list[Hit]:
        """BM25 / full-text hits, best first."""

    def search_vector(self, query: SearchQuery) -> list[Hit]:
        """Nearest neighbours of ``query.vector``, best first."""

    def health(self) -> dict[str, Any]:
        """Reachability and counts; raise :class:`SinkError` if unreachable."""

    def close(self) -> None:
        """Release connections and files (the process is done with the sink, or forked); a sink holding nothing
        writes ``pass``. Called once by :func:`pi_framework.runtime.reset`; the sink may be built again afterwards."""
