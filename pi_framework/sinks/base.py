"""The sink contract: what an index must do for the pipeline and for search."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pi_framework.pipeline.documents import Chunk


class SinkError(RuntimeError):
    """The sink could not do what was asked (unreachable, mapping mismatch, ...)."""


@dataclass
class WriteResult:
    """Outcome of a bulk write: ids confirmed in the index, and the reason for each id that is not."""

    written: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


@dataclass
class SearchQuery:
    """A query against one sink. Every query is filtered by workspace (global content always matches)
    and by privacy (a private chunk matches only when ``user_id`` is its owner)."""

    workspace_id: str
    text: str = ""
    vector: Sequence[float] | None = None
    kinds: Sequence[str] | None = None
    user_id: str | None = None
    limit: int = 10


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


@runtime_checkable
class Sink(Protocol):
    name: str

    def ensure_ready(self, dimension: int) -> None:
        """Create indices/tables if absent; raise :class:`SinkError` if present with another vector dimension."""

    def write(self, chunks: Sequence[Chunk]) -> WriteResult:
        """Upsert chunks (with vectors) by id. Never raises for a single bad item: it lands in ``failed``."""

    def delete_chunks(self, chunk_ids: Sequence[str]) -> None:
        """Remove chunks by id (missing ids are not an error)."""

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
