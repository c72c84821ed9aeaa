"""The upgrade of an index the first version wrote: chat documents re-keyed to workspace-scoped ids.

The first version's ids, ``chats:<chat>`` and ``chats:<chat>:<message>``, had no workspace, so two
workspaces using the same chat id overwrote each other. This module moves every such document of the
ledger (source ``chats``) to its id of :func:`pi_chats.ids.document_id`, using the workspace the ledger
recorded it under. Chats are pushed, not re-enumerable, so the content comes from the index itself:
the chunks (text, vector, owner, metadata) are read back from the sinks (``Sink.read_chunks``, part of the
sink contract) and written under the new ids to every sink, without embedding anything again.

Per batch of old documents, in this order:

1. new chunks written to every sink (an upsert: doing it twice changes nothing);
2. the new documents recorded in the ledger (old rows kept);
3. the old documents deleted from every sink, then from the ledger.

Killed anywhere, the old rows are still in the ledger and the next run takes them again: a new id
already recorded is not copied twice (only step 3 is left), new chunks written but never recorded are
overwritten by the same copy. The ledger never names a chunk no sink holds. Meanwhile a message can be
found twice (old and new id) and ``delete_chat`` removes both (old ids of its workspace and their twins).
Documents of a deleted chat are dropped, not copied; an old document no sink holds any more is dropped
from the ledger.

When it runs: in a background thread on worker start (the ``worker_start`` hook; Celery gives a pool
process only seconds to start), at the start of every ``retry_chats`` pass and of ``pi chats-backfill``
(the first use outside a worker), and on demand (``pi chats-rekey``). One process at a time does it
(a PostgreSQL advisory lock, a file lock next to a SQLite database); the others go on. A marker in
``sync_states`` (source ``pi_chats``, scope ``document-ids``) records that it finished, so later starts
cost one query; the start and the end are logged once, at INFO.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from loguru import logger
from sqlalchemy import text
from sqlalchemy.engine import make_url

from pi_chats import ids, store
from pi_framework.api import (
    Chunk,
    Database,
    Document,
    Indexer,
    Ledger,
    LedgerRecord,
    LedgerUpdate,
    PluginState,
    Settings,
    Sink,
    chunk_id,
    get_database,
    get_settings,
    utcnow,
)

SOURCE = KIND = "chats"
MARKER_SOURCE, MARKER_SCOPE = "pi_chats", "document-ids"
#: the plugin's reserved ``sync_states`` name, where the marker lives
MARKER = PluginState.reserved(MARKER_SOURCE)
#: what the marker says once the index holds only ids of :mod:`pi_chats.ids`
VERSION = 2
#: old documents per batch (one ledger read, one write per sink, one ledger transaction)
BATCH = 200
#: PostgreSQL advisory lock of the upgrade ("pi-rekey" as an int64)
_LOCK_KEY = int.from_bytes(b"pi-rekey", "big")

_finished: set[tuple[int, str]] = set()  # (pid, database url) where the marker was seen


@dataclass
class RekeyStats:
    """What one run did, counted in old documents."""

    legacy: int = 0  # old documents found when the run started
    rekeyed: int = 0  # copied under their new id
    already: int = 0  # their new id was already recorded (an earlier run, or a redelivery): only deleted
    dropped: int = 0  # deleted without a copy: chat deleted, unreadable id, or no sink holds them any more
    failed: dict[str, str] = field(default_factory=dict)  # old id -> why it is left for the next run
    complete: bool = False
    seconds: float = 0.0


# ---------------------------------------------------------------------- entry points
def ensure_rekeyed(
    database: Database | None = None,
    sinks: Sequence[Sink] | None = None,
    settings: Settings | None = None,
    *,
    force: bool = False,
) -> RekeyStats | None:
    """Re-key the first version's documents unless that is done (or another process is at it: ``None``).

    *force* ignores the marker (documents an old worker wrote after the upgrade finished).
    """
    settings = settings or get_settings()
    database = database or get_database(settings)
    key = (os.getpid(), database.url)
    if not force and (key in _finished or _marked()):
        _finished.add(key)
        return None
    with _exclusive(database, settings) as mine:
        if not mine:
            logger.debug("chats: another process is re-keying chat document ids")
            return None
        if not force and _marked():
            _finished.add(key)
            return None
        stats = rekey(database, list(sinks) if sinks is not None else _sinks())
        if stats.complete:
            _mark(stats)
            _finished.add(key)
        return stats


def start_in_background() -> threading.Thread:
    """Run :func:`ensure_rekeyed` in a daemon thread (from ``worker_start``: a pool process must start quickly)."""
    thread = threading.Thread(target=_run_logged, name="pi-chats-rekey", daemon=True)
    thread.start()
    return thread


def _run_logged() -> None:
    try:
        ensure_rekeyed()
    except Exception as exc:  # noqa: BLE001 - a background thread has no caller to tell; the next pass resumes
        logger.warning(
            "chats: re-keying document ids stopped ({}: {}); the next worker start or retry_chats pass resumes it",
            type(exc).__name__,
            exc,
        )


def _sinks() -> list[Sink]:
    """What writers write: the live index generation's sinks, and one being built for a model change (its mirror reads
    and rewrites that generation's own chunks)."""
    from pi_framework.api import write_sinks

    return write_sinks()


# ---------------------------------------------------------------------- the marker and the lock
def _marked() -> bool:
    return int((MARKER.load(MARKER_SCOPE) or {}).get("version", 0)) >= VERSION


def _mark(stats: RekeyStats) -> None:
    MARKER.save(
        MARKER_SCOPE,
        {"version": VERSION, "finished_at": utcnow().isoformat(), "rekeyed": stats.rekeyed, "dropped": stats.dropped},
    )


@contextmanager
def _exclusive(database: Database, settings: Settings) -> Iterator[bool]:
    """Whether this process holds the upgrade's lock (held until the block ends, released if the process dies)."""
    database.ensure_schema()
    engine = database.engine
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            mine = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": _LOCK_KEY}).scalar())
            connection.commit()
            try:
                yield mine
            finally:
                if mine:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
                    connection.commit()
        return
    path = _lock_path(database.url, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            mine = False
        else:
            mine = True
        try:
            yield mine
        finally:
            if mine:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_path(url: str, settings: Settings) -> Path:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        return Path(f"{database}.pi_chats-rekey.lock")
    return settings.data_dir / "pi_chats-rekey.lock"


# ---------------------------------------------------------------------- the run
def _legacy(database: Database, after: str, limit: int) -> list[LedgerRecord]:
    """Old documents of the ledger after *after*, in id order (keyset paging: failed ones are not read again)."""
    return Ledger(database).records(SOURCE, ids.LEGACY_PREFIX, after, limit)


def _count_legacy(database: Database) -> int:
    return Ledger(database).count(SOURCE, ids.LEGACY_PREFIX)


def rekey(database: Database, sinks: Sequence[Sink], batch: int = BATCH) -> RekeyStats:
    """One pass over every old document of the ledger (see the module's docstring for the order of steps)."""
    started = time.monotonic()
    stats = RekeyStats(legacy=_count_legacy(database))
    if not stats.legacy:
        stats.complete = True
        return stats
    logger.info(
        "chats: re-keying {} chat document(s) from first-version ids (chats:<chat>:<message>) to workspace-scoped ids "
        "(chat:<workspace>:<chat>:<message>)",
        stats.legacy,
    )
    run = _Run(database, sinks, stats)
    after = ""  # keyset paging by id (any collation: every id sorts after the empty string)
    while rows := _legacy(database, after, batch):
        run.batch(rows)
        after = rows[-1].document_id
    stats.complete = not stats.failed
    stats.seconds = time.monotonic() - started
    logger.info(
        "chats: re-keyed chat documents in {:.1f}s: {} copied, {} already under their new id, {} dropped "
        "(deleted chat or no longer in any sink), {} left for the next run{}",
        stats.seconds,
        stats.rekeyed,
        stats.already,
        stats.dropped,
        len(stats.failed),
        "".join(f"; {doc_id}: {reason}" for doc_id, reason in list(stats.failed.items())[:3]),
    )
    return stats


class _Run:
    def __init__(self, database: Database, sinks: Sequence[Sink], stats: RekeyStats) -> None:
        self.database = database
        self.sinks = list(sinks)
        self.stats = stats
        self.indexer = Indexer(sinks=self.sinks, database=database)
        self.ready = False

    def batch(self, rows: list[LedgerRecord]) -> None:
        targets: dict[str, str] = {}  # old id -> new id
        drop: list[str] = []
        parsed = {row.document_id: ids.parse_legacy(row.document_id) for row in rows}
        keys = sorted(
            {(row.workspace_id, parsed[row.document_id][0]) for row in rows if parsed[row.document_id] and row.workspace_id}
        )
        with self.database.session() as session:
            chats = store.read(session, keys)
        for row in rows:
            legacy = parsed[row.document_id]
            chat = chats.get((row.workspace_id, legacy[0])) if legacy and row.workspace_id else None
            if legacy is None or not row.workspace_id or (chat is not None and chat.deleted):
                drop.append(row.document_id)
            else:
                targets[row.document_id] = ids.document_id(row.workspace_id, *legacy)
        recorded = self.indexer.ledger.lookup(list(targets.values()))
        already = [old for old, new in targets.items() if new in recorded and recorded[new].recorded]
        copies = self._copies([row for row in rows if row.document_id in targets and row.document_id not in already], targets)
        lost = [old for old, chunks in copies.items() if chunks is None]
        written = self._write({old: chunks for old, chunks in copies.items() if chunks is not None}, rows, targets)
        gone = drop + lost + already + written
        if gone:
            self.indexer.delete_documents(gone)  # every sink first, then the ledger
        self.stats.rekeyed += len(written)
        self.stats.already += len(already)
        self.stats.dropped += len(drop) + len(lost)

    def _copies(self, rows: list[LedgerRecord], targets: dict[str, str]) -> dict[str, list[Chunk] | None]:
        """The chunks of each old document under its new id (``None``: no sink holds it any more)."""
        wanted = {row.document_id: row for row in rows}
        found: dict[str, list[Chunk]] = {}
        hashes = {
            chunk: digest for entry in self.indexer.ledger.lookup(list(wanted)).values() for chunk, digest in entry.hashes.items()
        }
        for sink in self.sinks:
            missing = [old for old in wanted if old not in found]
            for chunk in sink.read_chunks(documents=missing):  # streamed; a batch holds BATCH documents at most
                if chunk.workspace_id == wanted[chunk.document_id].workspace_id:  # never another workspace's text
                    found.setdefault(chunk.document_id, []).append(chunk)
        copies: dict[str, list[Chunk] | None] = {}
        for old, row in wanted.items():
            chunks = sorted(found.get(old, []), key=lambda chunk: chunk.index)
            if not chunks and row.chunk_count:
                copies[old] = None
                continue
            copies[old] = [_moved(chunk, targets[old], hashes.get(chunk.id, chunk.content_hash)) for chunk in chunks]
        return copies

    def _write(self, copies: dict[str, list[Chunk]], rows: list[LedgerRecord], targets: dict[str, str]) -> list[str]:
        """Write the copies to every sink and record those every sink confirmed; returns their old ids."""
        chunks = [chunk for group in copies.values() for chunk in group]
        refused: dict[str, str] = {}
        if chunks:
            self._prepare(chunks)
            for sink in self.sinks:
                result = sink.write(chunks)
                confirmed = set(result.written)
                for chunk in chunks:
                    if chunk.id not in confirmed:
                        refused.setdefault(chunk.document_id, f"sink {sink.name}: {result.failed.get(chunk.id, 'not confirmed')}")
        by_id = {row.document_id: row for row in rows}
        done = [old for old in copies if targets[old] not in refused]
        for old in copies:
            if targets[old] in refused:
                self.stats.failed[old] = refused[targets[old]]
        update = LedgerUpdate(
            confirmed_documents=[
                (
                    Document(
                        id=targets[old],
                        source=by_id[old].source,
                        kind=by_id[old].kind,
                        workspace_id=by_id[old].workspace_id,
                        updated_at=by_id[old].source_updated_at,
                    ),
                    len(copies[old]),
                )
                for old in done
            ],
            confirmed_chunks=[chunk for old in done for chunk in copies[old]],
        )
        if update.confirmed_documents:
            self.indexer.ledger.apply(update)
        return done

    def _prepare(self, chunks: list[Chunk]) -> None:
        """``ensure_ready`` of every sink with the dimension of the vectors copied (the embedder's if none has one)."""
        if self.ready:
            return
        dimension = next((len(chunk.vector) for chunk in chunks if chunk.vector is not None), None)
        for sink in self.sinks:
            sink.ensure_ready(dimension if dimension is not None else self.indexer.embedder.dimension)
        self.ready = True


def _moved(chunk: Chunk, doc_id: str, content_hash: str) -> Chunk:
    return Chunk(
        id=chunk_id(doc_id, chunk.index),
        document_id=doc_id,
        index=chunk.index,
        text=chunk.text,
        content_hash=content_hash,
        source=chunk.source,
        kind=chunk.kind,
        workspace_id=chunk.workspace_id,
        title=chunk.title,
        key=chunk.key,
        url=chunk.url,
        project_ids=list(chunk.project_ids),
        owner_id=chunk.owner_id,
        metadata=dict(chunk.metadata),
        vector=chunk.vector,
    )


def describe(stats: RekeyStats | None) -> str:
    if stats is None:
        return "nothing to do (already done, or another process is doing it)"
    return (
        f"{stats.legacy} first-version chat document(s): {stats.rekeyed} re-keyed, {stats.already} already re-keyed, "
        f"{stats.dropped} dropped, {len(stats.failed)} left for the next run"
    )
