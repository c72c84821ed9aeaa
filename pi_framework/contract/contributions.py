"""What a plugin can contribute through the ``register_*`` hooks.

These are the small value types and protocols the hook specifications in :mod:`pi_framework.hookspecs`
hand to plugins. They live apart from the hook specs so that importing them costs nothing. Plugins
import them from :mod:`pi_framework.api`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pi_framework.contract.names import RESERVED

if TYPE_CHECKING:
    import numpy as np

    from pi_framework.contract.documents import Document
    from pi_framework.contract.sinks import Sink
    from pi_framework.settings import Settings

TASK_PREFIX = "pi.celery_app."


@dataclass(frozen=True)
class TaskSpec:
    """A Celery task a plugin provides. ``name`` is the full task name (``pi.celery_app.…``)."""

    name: str
    func: Callable[..., Any]
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PeriodicJob:
    """A beat entry. A job with ``enabled=False`` gets no beat entry at all (it is listed as disabled)."""

    name: str
    task: str
    every: float
    enabled: bool = True
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: seconds after which a tick that no worker picked up is dropped; default ``max(every, 10)``
    expires: float | None = None


@dataclass(frozen=True)
class HealthCheck:
    """A named check: ``run()`` returns a JSON-serialisable dict; raising means the check failed."""

    name: str
    run: Callable[[], Mapping[str, Any]]


@dataclass
class Changes:
    """What changed in one workspace since a cursor.

    ``documents`` is a lazy iterator (deleted documents carry ``deleted=True``); ``cursor``
    is only valid after the iterator was exhausted and must be stored only once every
    change is in the index.
    """

    documents: Iterator[Document]
    cursor: Callable[[], dict[str, Any]]


@runtime_checkable
class Source(Protocol):
    """A kind of content. ``name`` prefixes document ids (``issues:<uuid>``).

    ``scope`` says how the framework drives it: ``workspace`` sources are vectorized per
    workspace and live-synced by the framework's own tasks; ``global`` and ``push``
    sources bring their own tasks (docs, chats). Every method below is called by the core;
    :class:`BaseSource` gives ``visible_versions`` and ``changed_workspaces`` defaults.

    ``name`` keys the source's rows in the PI database (its cursors in ``sync_states``, its documents in the
    ledger), so it may not contain ``:`` and a workspace source may not take a name the core or a bundled
    plugin keeps rows under (:func:`source_name_problem`); the registry refuses such a source.
    """

    name: str
    kind: str
    scope: Literal["workspace", "global", "push"]

    def iter_documents(self, workspace_id: str) -> Iterable[Document]:
        """Every visible document of the workspace, streamed (never a list of the whole workspace)."""

    def changes(self, workspace_id: str, cursor: dict[str, Any] | None) -> Changes:
        """Upserts and removals since *cursor* (``None`` = from the beginning: every visible document)."""

    def visible_ids(self, workspace_id: str) -> Iterable[str]:
        """Ids of every visible document (used to reconcile hard deletes), streamed."""

    def visible_versions(self, workspace_id: str) -> Iterable[tuple[str, datetime | None]]:
        """``(document id, updated_at)`` of every visible document, streamed: the ledger comparison re-indexes a
        document whose ``updated_at`` differs from the indexed one. ``None`` as the version means "presence only"
        (the :class:`BaseSource` default): such a document is re-indexed only when missing."""

    def changed_workspaces(
        self, state: dict[str, Any] | None, cursors: Iterable[dict[str, Any]] = ()
    ) -> tuple[set[str] | None, dict[str, Any]]:
        """Workspaces with changes since *state* across all workspaces, and the next state (JSON): ``(ids, state)``.

        The live-sync tick syncs only the workspaces named (and those already known to have pending work), so a
        tick costs O(changes). On the first call (*state* ``None``) *cursors* are the workspaces' own cursors: start
        from the oldest of them, so no change any workspace has not taken is missed. ``None`` as ids means "every
        workspace may have changed" (the :class:`BaseSource` default)."""


class BaseSource:
    """Defaults for a :class:`Source`: subclass it and write ``iter_documents``, ``changes`` and ``visible_ids``.

    ``visible_versions`` defaults to every visible id with no version (presence only): the bulk comparison then
    finds missing and left-over documents but not stale ones. Override it when the source knows each document's
    ``updated_at`` (the Plane sources do), so a change the cursor missed is still caught by a re-feed.
    ``changed_workspaces`` defaults to "any workspace may have changed": every live-sync tick then measures every
    live workspace for this source. Override it when the source can scan its changes across workspaces at once.
    """

    name: str
    kind: str
    scope: Literal["workspace", "global", "push"] = "workspace"

    def visible_ids(self, workspace_id: str) -> Iterable[str]:
        raise NotImplementedError

    def visible_versions(self, workspace_id: str) -> Iterable[tuple[str, datetime | None]]:
        return ((document_id, None) for document_id in self.visible_ids(workspace_id))

    def changed_workspaces(
        self, state: dict[str, Any] | None, cursors: Iterable[dict[str, Any]] = ()
    ) -> tuple[set[str] | None, dict[str, Any]]:
        return None, {}


def source_name_problem(source: Source, reserved: Collection[str] = ()) -> str | None:
    """Why the registry refuses *source*'s name, or ``None`` when it is fine.

    A name with ``:`` would make its document ids' prefix (``<name>:``) overlap another source's. A workspace
    source's cursors are ``sync_states`` rows ``(name, workspace id)`` and its documents are ledger rows of
    ``source=name`` that the comparison deletes when not visible, so it may not take a name the machinery keeps
    rows of its own under (:data:`~pi_framework.contract.names.RESERVED`) or one a plugin reserved with the
    ``register_state_names`` hook (*reserved*: the loaded plugins' names).
    """
    name = source.name
    if not isinstance(name, str) or not name:
        return f"source name {name!r} must be a non-empty string"
    if ":" in name:
        return f"source name {name!r} may not contain ':' (document ids are '<name>:<id>')"
    if source.scope == "workspace" and (name in RESERVED or name in reserved):
        owner = "the sync machinery" if name in RESERVED else "a plugin (register_state_names)"
        return f"source name {name!r} is reserved: {owner} keeps rows of its own under it in the PI database"
    return None


@runtime_checkable
class Embedder(Protocol):
    """What the pipeline and search need from an embedding model (``register_embedders``; ``PI_EMBEDDER`` picks one)."""

    #: identifies the vectors (part of every chunk's content hash: a new model re-embeds everything)
    model_name: str
    dimension: int
    #: the model's window in tokens, special tokens included
    max_tokens: int
    #: tokens the model adds around every input ([CLS] and [SEP] for BERT models)
    special_tokens: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of *texts*: a ``(len(texts), dimension)`` float32 array, rows L2-normalised."""

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character ``(start, end)`` of every token of *text*, special tokens excluded."""


#: ``factory(settings)`` builds a sink on first use (``register_sinks``)
SinkFactory = Callable[["Settings"], "Sink"]
#: ``factory(settings)`` builds the embedder, at most once per process (``register_embedders``)
EmbedderFactory = Callable[["Settings"], Embedder]
