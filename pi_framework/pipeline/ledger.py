"""The ledger: which documents and chunks are confirmed in every sink, with the hash of what was embedded.

Rows live in the PI database (:class:`~pi_framework.db.models.IndexedDocument`,
:class:`~pi_framework.db.models.IndexedChunk`). The indexer writes them only after the sinks confirmed,
so the ledger may lag the sinks (a crash in between re-does the work) but never runs ahead of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy import update as sa_update
from sqlalchemy.orm import Session

from pi_framework.contract.documents import Chunk, Document
from pi_framework.db import Database
from pi_framework.db.fencing import Fence, require
from pi_framework.db.models import IndexedChunk, IndexedDocument, WithheldDocument, utcnow
from pi_framework.pipeline.hashing import hash_metadata

#: ids per ``IN (...)`` list: well below SQLite's and PostgreSQL's parameter limits
_IN_BATCH = 500
#: the hash of a chunk written ahead (:meth:`Ledger.write_ahead`) and not confirmed yet: never a real hash
PENDING = "pending"


def _batches(items: Sequence[Any], size: int = _IN_BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class LedgerEntry:
    """What the ledger knows of one document: its chunks' hashes (content and metadata) and whether the document itself
    is recorded."""

    hashes: dict[str, str] = field(default_factory=dict)
    #: chunk id -> metadata hash (``None``: recorded before metadata was hashed)
    metadata_hashes: dict[str, str | None] = field(default_factory=dict)
    recorded: bool = False
    source_updated_at: datetime | None = None


@dataclass(frozen=True)
class LedgerRecord:
    """One recorded document as the ledger holds it (its chunks aside)."""

    document_id: str
    workspace_id: str | None
    source: str
    kind: str
    source_updated_at: datetime | None
    chunk_count: int


@dataclass
class LedgerUpdate:
    """One group's changes, applied in a single transaction."""

    confirmed_documents: list[tuple[Document, int]] = field(default_factory=list)  # (document, chunk count)
    confirmed_chunks: list[Chunk] = field(default_factory=list)
    removed_chunks: list[str] = field(default_factory=list)
    #: failed (and withdrawn from the sinks): the document row goes and its chunks become ``PENDING``, so the document
    #: is missing until retried and the retry rewrites every chunk and deletes those it no longer has
    unrecorded_documents: list[str] = field(default_factory=list)
    touched_documents: list[Document] = field(default_factory=list)  # unchanged text, newer source_updated_at
    #: chunks whose metadata alone was updated in the sinks: their metadata hash moves, their content hash stays
    refreshed_chunks: list[Chunk] = field(default_factory=list)
    removed_documents: list[str] = field(default_factory=list)


def _upsert(session: Session, model: type, rows: list[dict[str, Any]], keys: list[str]) -> None:
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(model)
    updates = {name: statement.excluded[name] for name in rows[0] if name not in keys}
    session.execute(statement.on_conflict_do_update(index_elements=keys, set_=updates), rows)


def _utc(moment: datetime | None) -> datetime | None:
    """Aware UTC; a naive value (SQLite returns them) counts as UTC."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def same_instant(first: datetime | None, second: datetime | None) -> bool:
    """Equal points in time; a naive value (SQLite returns them) counts as UTC."""
    if first is None or second is None:
        return first is second
    return _utc(first) == _utc(second)


class Ledger:
    def __init__(self, database: Database) -> None:
        self.database = database

    def lookup(self, document_ids: Sequence[str]) -> dict[str, LedgerEntry]:
        entries: dict[str, LedgerEntry] = {}
        with self.database.session() as session:
            for batch in _batches(document_ids):
                for document_id, updated_at in session.execute(
                    select(IndexedDocument.document_id, IndexedDocument.source_updated_at).where(
                        IndexedDocument.document_id.in_(batch)
                    )
                ):
                    entry = entries.setdefault(document_id, LedgerEntry())
                    entry.recorded, entry.source_updated_at = True, updated_at
                for document_id, chunk_id, content_hash, metadata_hash in session.execute(
                    select(
                        IndexedChunk.document_id, IndexedChunk.chunk_id, IndexedChunk.content_hash, IndexedChunk.metadata_hash
                    ).where(IndexedChunk.document_id.in_(batch))
                ):
                    entry = entries.setdefault(document_id, LedgerEntry())
                    entry.hashes[chunk_id] = content_hash
                    entry.metadata_hashes[chunk_id] = metadata_hash
        return entries

    def check(self, fence: Fence | None) -> None:
        """Raise :class:`~pi_framework.db.fencing.LeaseLost` unless *fence* (when given) still holds its lease."""
        if fence is not None:
            with self.database.session() as session:
                require(session, fence, lock=False)

    def apply(self, update: LedgerUpdate, fence: Fence | None = None) -> None:
        """Commit one group's changes in one transaction; with *fence*, only while it still holds its lease (checked,
        and the lease row locked, in this same transaction: :class:`~pi_framework.db.fencing.LeaseLost` otherwise)."""
        now = utcnow()
        with self.database.session() as session:
            require(session, fence)
            for batch in _batches(update.removed_chunks):
                session.execute(delete(IndexedChunk).where(IndexedChunk.chunk_id.in_(batch)))
            gone = update.unrecorded_documents + update.removed_documents
            for batch in _batches(gone):
                session.execute(delete(IndexedDocument).where(IndexedDocument.document_id.in_(batch)))
            for batch in _batches(update.unrecorded_documents):
                session.execute(sa_update(IndexedChunk).where(IndexedChunk.document_id.in_(batch)).values(content_hash=PENDING))
            for batch in _batches(update.removed_documents):
                session.execute(delete(IndexedChunk).where(IndexedChunk.document_id.in_(batch)))
            settled = update.removed_documents + [document.id for document, _ in update.confirmed_documents]
            for batch in _batches(settled):
                session.execute(delete(WithheldDocument).where(WithheldDocument.document_id.in_(batch)))
            _upsert(
                session,
                IndexedChunk,
                [
                    {
                        "chunk_id": c.id,
                        "document_id": c.document_id,
                        "workspace_id": c.workspace_id,
                        "content_hash": c.content_hash,
                        # a chunk a tool copied (a re-key moving chunks) may carry none: its metadata says what it is
                        "metadata_hash": c.metadata_hash or hash_metadata(c.metadata),
                        "indexed_at": now,
                    }
                    for c in update.confirmed_chunks
                ],
                ["chunk_id"],
            )
            _upsert(
                session,
                IndexedDocument,
                [
                    {
                        "document_id": d.id,
                        "source": d.source,
                        "kind": d.kind,
                        "workspace_id": d.workspace_id,
                        "source_updated_at": d.updated_at,
                        "chunk_count": count,
                        "indexed_at": now,
                    }
                    for d, count in update.confirmed_documents
                ],
                ["document_id"],
            )
            if update.refreshed_chunks:  # a bulk UPDATE by primary key
                session.execute(
                    sa_update(IndexedChunk),
                    [
                        {"chunk_id": c.id, "metadata_hash": c.metadata_hash or None, "indexed_at": now}
                        for c in update.refreshed_chunks
                    ],
                )
            if update.touched_documents:  # a bulk UPDATE by primary key
                session.execute(
                    sa_update(IndexedDocument),
                    [{"document_id": d.id, "source_updated_at": d.updated_at} for d in update.touched_documents],
                )

    def withhold(self, documents: dict[str, tuple[str | None, str]]) -> None:
        """Keep these documents (``id -> (workspace, reason)``) out of search results until they are written or removed."""
        now = utcnow()
        rows = [
            {"document_id": document_id, "workspace_id": workspace, "reason": reason[:2000], "since": now}
            for document_id, (workspace, reason) in documents.items()
        ]
        if rows:
            with self.database.session() as session:
                _upsert(session, WithheldDocument, rows, ["document_id"])

    def withheld(self, document_ids: Sequence[str]) -> set[str]:
        """Which of *document_ids* search must not return (see :class:`~pi_framework.db.models.WithheldDocument`)."""
        if not document_ids:
            return set()
        with self.database.session() as session:
            return {
                document_id
                for batch in _batches(list(document_ids))
                for document_id in session.scalars(
                    select(WithheldDocument.document_id).where(WithheldDocument.document_id.in_(batch))
                )
            }

    def write_ahead(self, chunks: Sequence[Chunk], fence: Fence | None = None) -> None:
        """Record *chunks* as about to be written, before any sink sees them (hash :data:`PENDING`).

        If the process dies between the sink write and :meth:`apply`, the next run finds these ids in the
        ledger: a chunk still in the document is written again (its hash differs), one no longer in it is
        an orphan and is deleted from every sink. So nothing written is ever unknown to the ledger.

        With *fence*, this is also the check before the sinks see anything: a writer that lost its lease stops here
        (:class:`~pi_framework.db.fencing.LeaseLost`), even when it has nothing to write ahead (only deletes).
        """
        if not chunks:
            self.check(fence)
            return
        now = utcnow()
        rows = [
            {
                "chunk_id": c.id,
                "document_id": c.document_id,
                "workspace_id": c.workspace_id,
                "content_hash": PENDING,
                "metadata_hash": None,
                "indexed_at": now,
            }
            for c in chunks
        ]
        with self.database.session() as session:
            require(session, fence, lock=False)
            _upsert(session, IndexedChunk, rows, ["chunk_id"])

    def versions(self, workspace_id: str, source: str) -> dict[str, datetime | None]:
        """``document id -> source updated_at`` of what the ledger holds for one source of a workspace."""
        with self.database.session() as session:
            rows = session.execute(
                select(IndexedDocument.document_id, IndexedDocument.source_updated_at).where(
                    IndexedDocument.workspace_id == workspace_id, IndexedDocument.source == source
                )
            )
            return {document_id: _utc(stamp) for document_id, stamp in rows}

    def documents_with_chunks(self, workspace_id: str, source: str) -> list[str]:
        """Recorded documents of one source of a workspace that have at least one chunk."""
        with self.database.session() as session:
            return list(
                session.scalars(
                    select(IndexedDocument.document_id).where(
                        IndexedDocument.workspace_id == workspace_id,
                        IndexedDocument.source == source,
                        IndexedDocument.chunk_count > 0,
                    )
                )
            )

    def unrecorded_documents(self, workspace_id: str, prefix: str) -> set[str]:
        """Documents (ids starting with *prefix*) with chunks in the ledger but no document row: written
        ahead, then never confirmed (a crash, a failure); whatever holds them must be checked."""
        with self.database.session() as session:
            recorded = select(IndexedDocument.document_id).where(IndexedDocument.workspace_id == workspace_id)
            return set(
                session.scalars(
                    select(IndexedChunk.document_id)
                    .where(
                        IndexedChunk.workspace_id == workspace_id,
                        IndexedChunk.document_id.startswith(prefix, autoescape=True),
                        IndexedChunk.document_id.not_in(recorded),
                    )
                    .distinct()
                )
            )

    def chunk_ids(self, document_ids: Sequence[str]) -> list[str]:
        with self.database.session() as session:
            return [
                chunk_id
                for batch in _batches(document_ids)
                for chunk_id in session.scalars(select(IndexedChunk.chunk_id).where(IndexedChunk.document_id.in_(batch)))
            ]

    def document_ids(self, workspace_id: str | None, source: str | None = None) -> Iterator[str]:
        """Ids of recorded documents of *workspace_id* (``None``: global content), optionally of one source; streamed."""
        query = select(IndexedDocument.document_id).where(
            IndexedDocument.workspace_id.is_(None) if workspace_id is None else IndexedDocument.workspace_id == workspace_id
        )
        if source is not None:
            query = query.where(IndexedDocument.source == source)
        # pages of ids, not one long-lived cursor: callers may write to the ledger while iterating
        last = ""
        while True:
            with self.database.session() as session:
                page = list(
                    session.scalars(
                        query.where(IndexedDocument.document_id > last).order_by(IndexedDocument.document_id).limit(1000)
                    )
                )
            yield from page
            if len(page) < 1000:
                return
            last = page[-1]

    def remove_documents(self, document_ids: Iterable[str], fence: Fence | None = None) -> int:
        ids = list(document_ids)
        removed = 0
        with self.database.session() as session:
            require(session, fence)
            for batch in _batches(ids):
                session.execute(delete(WithheldDocument).where(WithheldDocument.document_id.in_(batch)))
                session.execute(delete(IndexedChunk).where(IndexedChunk.document_id.in_(batch)))
                removed += session.execute(delete(IndexedDocument).where(IndexedDocument.document_id.in_(batch))).rowcount
        return removed

    def remove_workspace(self, workspace_id: str) -> int:
        with self.database.session() as session:
            session.execute(delete(WithheldDocument).where(WithheldDocument.workspace_id == workspace_id))
            session.execute(delete(IndexedChunk).where(IndexedChunk.workspace_id == workspace_id))
            return session.execute(delete(IndexedDocument).where(IndexedDocument.workspace_id == workspace_id)).rowcount

    # ------------------------------------------------------------------ reads for plugins
    def workspaces_with_documents(self, workspace_ids: Iterable[str]) -> set[str]:
        """Which of *workspace_ids* still have recorded documents."""
        ids = sorted(set(workspace_ids))
        with self.database.session() as session:
            return {
                workspace_id
                for batch in _batches(ids)
                for workspace_id in session.scalars(
                    select(IndexedDocument.workspace_id).where(IndexedDocument.workspace_id.in_(batch)).distinct()
                )
            }

    def find_ids(self, workspace_id: str, source: str, ids: Iterable[str] = (), prefixes: Iterable[str] = ()) -> list[str]:
        """Recorded documents of *source* in *workspace_id* whose id is one of *ids* or starts with one of *prefixes*."""
        wanted = [IndexedDocument.document_id.in_(list(ids))] + [
            IndexedDocument.document_id.startswith(prefix, autoescape=True) for prefix in prefixes
        ]
        query = select(IndexedDocument.document_id).where(
            IndexedDocument.workspace_id == workspace_id, IndexedDocument.source == source, or_(*wanted)
        )
        with self.database.session() as session:
            return list(session.scalars(query))

    def records(self, source: str, prefix: str = "", after: str = "", limit: int = 1000) -> list[LedgerRecord]:
        """Recorded documents of *source* with ids starting with *prefix*, the first *limit* after id *after* in id
        order (keyset paging: pass the last id of a page to get the next)."""
        query = (
            select(
                IndexedDocument.document_id,
                IndexedDocument.workspace_id,
                IndexedDocument.source,
                IndexedDocument.kind,
                IndexedDocument.source_updated_at,
                IndexedDocument.chunk_count,
            )
            .where(
                IndexedDocument.source == source,
                IndexedDocument.document_id.startswith(prefix, autoescape=True),
                IndexedDocument.document_id > after,
            )
            .order_by(IndexedDocument.document_id)
            .limit(limit)
        )
        with self.database.session() as session:
            return [LedgerRecord(*row) for row in session.execute(query)]

    def count(self, source: str, prefix: str = "") -> int:
        """How many documents of *source* with ids starting with *prefix* are recorded."""
        query = select(func.count()).where(
            IndexedDocument.source == source, IndexedDocument.document_id.startswith(prefix, autoescape=True)
        )
        with self.database.session() as session:
            return session.scalar(query) or 0
