"""What a plugin can contribute through the ``register_*`` hooks.

These are the small value types the hook specifications in :mod:`pi_framework.hookspecs`
hand to plugins. They live apart from the hook specs so that importing them costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pi_framework.pipeline.documents import Document
    from pi_framework.settings import Settings
    from pi_framework.sinks.base import Sink

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
    sources bring their own tasks (docs, chats).
    """

    name: str
    kind: str
    scope: Literal["workspace", "global", "push"]

    def iter_documents(self, workspace_id: str) -> Iterable[Document]:
        """Every visible document of the workspace, streamed (never a list of the whole workspace)."""

    def changes(self, workspace_id: str, cursor: dict[str, Any] | None) -> Changes:
        """Upserts and removals since *cursor* (``None`` = from the beginning)."""

    def visible_ids(self, workspace_id: str) -> Iterable[str]:
        """Ids of every visible document (used to reconcile hard deletes), streamed."""


SinkFactory = Callable[["Settings"], "Sink"]
EmbedderFactory = Callable[["Settings"], Any]
