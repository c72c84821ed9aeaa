"""The sink contract: what an index must do for the pipeline and for search."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pi_framework.contract.documents import Chunk


class SinkError(RuntimeError):
    """The sink could not do what was asked (unreachable, mapping mismatch, ...)."""


@dataclass
class WriteResult:
    """Outcome of a bulk write: ids confirmed in the index, and the reason for each id that is not."""

    written: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


#: the chunk-metadata key holding the user Plane's guest rule compares with (an issue's creator, a page's owner)
CREATED_BY = "created_by"


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
        touched: its id lands in ``failed`` ("stale write refused"). The same or a larger version replaces it; the
        pipeline writes with its lease's fencing token, so a writer that lost its lease never puts an older version
        back. ``None`` writes unconditionally (tools that rewrite chunks in place)."""

    def delete_chunks(self, chunk_ids: Sequence[str], version: int | None = None) -> None:
        """Remove chunks by id (missing ids are not an error); with a *version*, never a chunk stored with a larger one."""

    def delete_documents(self, document_ids: Sequence[str], version: int | None = None) -> int:
        """Remove every chunk of these documents, found by the chunks' ``document_id`` (not by ids the ledger knows):
        chunks an interrupted run wrote but never recorded go too. Missing documents are not an error; return how
        many chunks were removed. The pipeline deletes documents only this way. With a *version*, a chunk stored with
        a larger version stays (as in :meth:`delete_chunks`)."""

    def read_chunks(self, *, documents: Sequence[str] | None = None, workspace_id: str | None = None) -> Iterator[Chunk]:
        """Stream the stored chunks, vectors included, of the documents named (``documents``) or of every document of
        one workspace (``workspace_id``); exactly one of the two is given. Chunks come in pages, never all at once;
        a ``content_hash`` the sink does not keep is ``""``. For tools that move chunks without re-embedding them."""

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
