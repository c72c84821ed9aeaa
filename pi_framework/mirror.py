"""The mirror: what every writer writes into an index generation that is being built, beside the live one.

While a new generation is built (:mod:`pi_framework.sync.generations`), each writer's sink list is the live
generation's sinks followed by one :class:`MirrorSink` per sink (:func:`pi_framework.runtime.write_sinks`). The
indexer treats a mirror as one more sink: whatever it writes, updates or deletes in the live generation, the mirror
does in the building one, with vectors of the building generation's model. So nothing written during the build is
missing from the new generation when it goes live.

A mirror never fails the live write: what the building generation refuses sends its workspace back to the copy
(:func:`pi_framework.db.generations.invalidate`), which redoes it from the live generation. Only when the generation
went live in the meantime is the failure reported, as any sink's would be.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from loguru import logger

from pi_framework.contract.contributions import Embedder
from pi_framework.contract.documents import Chunk
from pi_framework.contract.sinks import Hit, SearchQuery, Sink, WriteResult
from pi_framework.db import Database
from pi_framework.db import generations as state


def reembedded(chunks: Sequence[Chunk], embedder: Embedder) -> list[Chunk]:
    """*chunks* with vectors of *embedder* (a chunk stored without a vector keeps none)."""
    embed = [chunk for chunk in chunks if chunk.vector is not None]
    vectors = embedder.embed([chunk.text for chunk in embed]) if embed else []
    by_id = {chunk.id: vector.tolist() for chunk, vector in zip(embed, vectors, strict=True)}
    return [replace(chunk, vector=by_id.get(chunk.id)) for chunk in chunks]


class MirrorSink:
    """*live*'s writes, repeated into *target* (*live* for another generation) with *embedder*'s vectors."""

    def __init__(self, live: Sink, target: Sink, embedder: Embedder, generation: str, database: Database) -> None:
        self.live, self.target, self.embedder = live, target, embedder
        self.generation, self.database = generation, database
        self.name = f"{live.name}@{generation}"

    def _failed(self, what: str, exc: Exception | str, scopes: Sequence[str | None] | None) -> bool:
        """Log and send *scopes* (``None``: all) back to the copy; ``False`` when the generation is live (report it)."""
        logger.warning("index generation {}: {} failed ({}); its copy is redone", self.generation, what, exc)
        return state.invalidate(self.database, self.generation, None if scopes is None else [scope or "" for scope in scopes])

    # ------------------------------------------------------------------ what the indexer calls
    def ensure_ready(self, dimension: int) -> None:
        try:
            self.target.ensure_ready(self.embedder.dimension)
        except Exception as exc:
            if not self._failed("preparing its index", exc, None):
                raise

    def write(self, chunks: Sequence[Chunk], version: int | None = None) -> WriteResult:
        ids = [chunk.id for chunk in chunks]
        try:
            result = self.target.write(reembedded(chunks, self.embedder), version)
        except Exception as exc:
            if not self._failed(f"writing {len(chunks)} chunks", exc, [chunk.workspace_id for chunk in chunks]):
                raise
            return WriteResult(written=ids)
        if result.failed:
            refused = [chunk.workspace_id for chunk in chunks if chunk.id in result.failed]
            if not self._failed(f"writing {len(result.failed)} chunks", next(iter(result.failed.values())), refused):
                return result
        return WriteResult(written=ids)

    def update_metadata(self, updates: Sequence[tuple[str, dict[str, Any]]], version: int | None = None) -> WriteResult:
        """Updated in the building generation too; a chunk it does not hold yet is copied there from the live one
        (which the indexer updated first), so a metadata change never waits for the copy."""
        ids = [chunk_id for chunk_id, _ in updates]
        try:
            result = self.target.update_metadata(updates, version)
            if result.failed:
                missing = set(result.failed)
                documents = {chunk_id.rpartition("#")[0] for chunk_id in missing}
                chunks = [chunk for chunk in self.live.read_chunks(documents=sorted(documents)) if chunk.id in missing]
                if chunks:
                    self.target.write(reembedded(chunks, self.embedder), version)
        except Exception as exc:
            if not self._failed(f"updating {len(updates)} chunks", exc, None):
                raise
        return WriteResult(written=ids)

    def delete_chunks(self, chunk_ids: Sequence[str], version: int | None = None) -> None:
        try:
            self.target.delete_chunks(chunk_ids, version)
        except Exception as exc:
            if not self._failed(f"deleting {len(chunk_ids)} chunks", exc, None):
                raise

    def delete_documents(self, document_ids: Sequence[str], version: int | None = None) -> int:
        try:
            return self.target.delete_documents(document_ids, version)
        except Exception as exc:
            if not self._failed(f"deleting {len(document_ids)} documents", exc, None):
                raise
            return 0

    def delete_workspace(self, workspace_id: str, kind: str | None = None) -> int:
        try:
            return self.target.delete_workspace(workspace_id, kind)
        except Exception as exc:
            if not self._failed(f"deleting workspace {workspace_id}", exc, [workspace_id]):
                raise
            return 0

    # ------------------------------------------------------------------ the rest of the Sink protocol: the target's
    def read_chunks(
        self, *, documents: Sequence[str] | None = None, workspace_id: str | None = None, global_chunks: bool = False
    ) -> Iterator[Chunk]:
        return self.target.read_chunks(documents=documents, workspace_id=workspace_id, global_chunks=global_chunks)

    def count(self, workspace_id: str | None = None, kind: str | None = None) -> int:
        return self.target.count(workspace_id, kind)

    def existing(self, chunk_ids: Sequence[str]) -> set[str]:
        return self.target.existing(chunk_ids)

    def search_text(self, query: SearchQuery) -> list[Hit]:
        return self.target.search_text(query)

    def search_vector(self, query: SearchQuery) -> list[Hit]:
        return self.target.search_vector(query)

    def health(self) -> dict[str, Any]:
        return self.target.health()

    def for_generation(self, generation: str) -> Sink:
        return self.live.for_generation(generation)

    def drop(self) -> None:
        self.target.drop()

    def close(self) -> None:
        self.target.close()
