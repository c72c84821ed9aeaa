"""The change feed: Plane's PostgreSQL tells which workspaces changed, by logical replication (``pgoutput``).

*Finding*, not *applying*: every INSERT, UPDATE, DELETE and TRUNCATE on a table some source watches
(:meth:`PlaneSource.watched_tables`) becomes a **flagged** workspace with a **compare request**
(:mod:`pi_framework.changefeed.requests`), then the consumer sends the workspace a live sync at once (the tick
would too, within one interval). The live sync applies the changes since its cursors as always, and because the
feed asked, also compares every visible id and version with the ledger (the reconcile): a change that left
``updated_at`` alone (Plane's bulk archive, bulk soft delete, bulk state change), a hard delete, a late commit
or a TRUNCATE is applied within a second, not at the next hourly reconcile.

**Nothing is skipped.** Changes are read per committed transaction; the workspaces they name are committed to the
PI database first, and only then is the transaction's end LSN confirmed to PostgreSQL (``flush_lsn``). A consumer
killed in between is sent the same transactions again by the slot when it (or another worker) resumes.

**The slot never fills Plane's disk.** The consumer confirms at least every ``PI_CHANGEFEED_FEEDBACK_SECONDS``,
idle or not (with nothing pending it confirms the server's last sent position, so WAL of unwatched tables is
released too). Every ``PI_CHANGEFEED_LAG_CHECK_SECONDS`` every worker's feed thread (the holder and those waiting for
the lease) reads the slot's lag; a slot more than ``PI_CHANGEFEED_MAX_LAG_BYTES`` behind, or invalidated by the
server (``wal_status = lost``), is dropped, logged at ERROR, and every live workspace gets a full compare; a slot that
vanished (dropped by a DBA, a failover) is recreated with the same full compare. Polling (the tick's ``updated_at``
scan) never stops: it is the safety net while the feed is down and the only path where it cannot run.

**One consumer.** A lease (``changefeed:<slot>``) and the slot itself (one active connection) keep it to one
process at a time: in the worker (a thread of the main process, started on ``worker_ready``) or ``pi changefeed run``.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from loguru import logger
from sqlalchemy import select as sql_select
from sqlalchemy.engine import make_url

from pi_framework import runtime
from pi_framework.changefeed import requests
from pi_framework.changefeed.pgoutput import Begin, Change, Commit, Decoder, Relation, Truncate
from pi_framework.db import get_database
from pi_framework.db.models import IndexedDocument, JobStatus, WorkspaceVectorization
from pi_framework.settings import Settings
from pi_framework.sync import compare_requests, current_jobs, current_leases
from pi_framework.sync.dispatch import LIVE_SYNC_TASK, send_task
from pi_framework.sync.leases import queued_marker, workspace_lease

Mapper = Callable[[Mapping[str, Any]], Iterable[str] | None]


class Unavailable(RuntimeError):
    """The feed cannot run here (polling goes on): *reason* for the log and ``pi status``, *sql* for a DBA."""

    def __init__(self, reason: str, sql: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sql = sql or []


class SlotGone(RuntimeError):
    """The slot was dropped (by a DBA, a failover, or the lag check) or invalidated: recreate it and compare everything."""


# ---------------------------------------------------------------------- what is watched
@dataclass(frozen=True)
class Watcher:
    source: str
    map_row: Mapper
    #: the table holds this source's documents (``<source>:<row id>``): a key-only DELETE maps through the ledger
    documents: bool


def watched(sources: Iterable[Any] | None = None) -> dict[str, list[Watcher]]:
    """``table -> watchers`` over the installed workspace sources that declare ``watched_tables()``."""
    if sources is None:
        sources = runtime.get_registry().workspace_sources()
    tables: dict[str, list[Watcher]] = {}
    for source in sources:
        declare = getattr(source, "watched_tables", None)
        if declare is None:
            continue
        documents = getattr(source, "documents_table", lambda: None)()
        for table, mapper in declare().items():
            tables.setdefault(table, []).append(Watcher(source.name, mapper, table == documents))
    return tables


def replication_url(settings: Settings) -> str | None:
    """libpq URL of the feed's connection (``PI_CHANGEFEED_DATABASE_URL``, else ``PLANE_DATABASE_URL``)."""
    url = settings.PI_CHANGEFEED_DATABASE_URL or settings.PLANE_DATABASE_URL
    if not url or not url.startswith(("postgresql", "postgres:")):
        return None
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def not_postgresql(settings: Settings) -> str:
    if not (settings.PI_CHANGEFEED_DATABASE_URL or settings.PLANE_DATABASE_URL):
        return "PLANE_DATABASE_URL is not set"
    return "Plane's database is not PostgreSQL"


def _connect(settings: Settings, replication: bool = False) -> Any:
    import psycopg2
    import psycopg2.extras

    url = replication_url(settings)
    if url is None:
        raise Unavailable(not_postgresql(settings))
    factory = psycopg2.extras.LogicalReplicationConnection if replication else None
    try:
        connection = psycopg2.connect(url, connection_factory=factory, connect_timeout=10, application_name="pi-changefeed")
    except psycopg2.OperationalError as exc:
        from pi_framework.redaction import redact_text

        raise Unavailable(f"cannot connect to Plane's database for the change feed: {redact_text(str(exc)).strip()}") from None
    if not replication:
        connection.autocommit = True
    return connection


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------------- set-up
@dataclass
class Plan:
    """What ``pi changefeed setup`` finds and would do."""

    wal_level: str
    role: str
    can_replicate: bool
    tables: list[str]
    missing_tables: list[str]
    statements: list[str] = field(default_factory=list)
    slot_exists: bool = False


def plan(settings: Settings, connection: Any = None) -> Plan:
    """Read the server's state and list the statements that would set the feed up (nothing is changed)."""
    own = connection is None
    connection = connection or _connect(settings)
    try:
        with connection.cursor() as cur:
            cur.execute("SHOW wal_level")
            (wal_level,) = cur.fetchone()
            cur.execute("SELECT current_user, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user")
            role, can_replicate = cur.fetchone()
            wanted = watched()
            documents = {table for table, watchers in wanted.items() if any(w.documents for w in watchers)}
            cur.execute(
                "SELECT c.relname, c.relreplident FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema() AND c.relname = ANY(%s)",
                (sorted(wanted),),
            )
            identity = dict(cur.fetchall())
            tables = sorted(identity)
            result = Plan(wal_level, role, bool(can_replicate), tables, sorted(set(wanted) - set(identity)))
            publication = settings.PI_CHANGEFEED_PUBLICATION
            cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,))
            exists = cur.fetchone() is not None
            cur.execute("SELECT tablename FROM pg_publication_tables WHERE pubname = %s", (publication,))
            published = {name for (name,) in cur.fetchall()}
            listed = ", ".join(_quote(table) for table in tables)
            if not exists:
                result.statements.append(f"CREATE PUBLICATION {_quote(publication)} FOR TABLE {listed};")
            elif published != set(tables):
                result.statements.append(f"ALTER PUBLICATION {_quote(publication)} SET TABLE {listed};")
            for table in tables:  # deletes of a table that is no source's documents must carry workspace_id
                if table not in documents and identity[table] != "f":
                    result.statements.append(f"ALTER TABLE {_quote(table)} REPLICA IDENTITY FULL;")
            cur.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (settings.PI_CHANGEFEED_SLOT,))
            result.slot_exists = cur.fetchone() is not None
            if not result.slot_exists:
                result.statements.append(
                    f"SELECT pg_create_logical_replication_slot('{settings.PI_CHANGEFEED_SLOT}', 'pgoutput');"
                )
            return result
    finally:
        if own:
            connection.close()


def setup(settings: Settings) -> Plan:
    """Create the publication (limited to the watched tables), the replica identities and the slot.

    Raises :class:`Unavailable` with the exact SQL a DBA must run when ``wal_level`` is not ``logical`` or the role
    lacks a right; nothing is half-done that a second run would not finish."""
    import psycopg2

    connection = _connect(settings)
    try:
        found = plan(settings, connection)
        if not found.tables:
            raise Unavailable(f"none of the watched tables exists in Plane's database ({', '.join(found.missing_tables)})")
        dba: list[str] = []
        if found.wal_level != "logical":
            dba.append("ALTER SYSTEM SET wal_level = logical;  -- then restart PostgreSQL")
        if not found.can_replicate:
            dba.append(f"ALTER ROLE {_quote(found.role)} WITH REPLICATION;")
        done: list[str] = []
        for statement in found.statements:
            creates_slot = statement.startswith("SELECT pg_create_logical_replication_slot")
            if creates_slot and (dba or found.wal_level != "logical"):
                dba.append(statement)
                continue
            try:
                with connection.cursor() as cur:
                    cur.execute(statement)
                done.append(statement)
            except (psycopg2.errors.InsufficientPrivilege, psycopg2.errors.ObjectNotInPrerequisiteState) as exc:
                logger.warning("changefeed setup: {}: {}", statement, str(exc).strip())
                dba.append(statement)
        found.statements = done
        if dba:
            raise Unavailable(
                f"the role {found.role!r} cannot set up the change feed (wal_level={found.wal_level}, "
                f"replication={'yes' if found.can_replicate else 'no'}); a DBA must run on Plane's database:",
                dba,
            )
        requests.save_status(settings.PI_CHANGEFEED_SLOT, set_up=True, publication=settings.PI_CHANGEFEED_PUBLICATION)
        from pi_framework.sync import state

        state.save(
            requests.SETUP,
            settings.PI_CHANGEFEED_SLOT,
            {"tables": found.tables, "publication": settings.PI_CHANGEFEED_PUBLICATION},
        )
        return found
    finally:
        connection.close()


def was_set_up(settings: Settings) -> bool:
    from pi_framework.sync import state

    return state.load(requests.SETUP, settings.PI_CHANGEFEED_SLOT) is not None


# ---------------------------------------------------------------------- slot state
@dataclass
class SlotInfo:
    exists: bool
    active_pid: int | None = None
    lag_bytes: int | None = None
    confirmed_lsn: str | None = None
    wal_status: str | None = None


def slot_info(settings: Settings, connection: Any = None) -> SlotInfo:
    own = connection is None
    connection = connection or _connect(settings)
    try:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT active_pid, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, "
                "confirmed_flush_lsn::text, wal_status FROM pg_replication_slots WHERE slot_name = %s",
                (settings.PI_CHANGEFEED_SLOT,),
            )
            row = cur.fetchone()
        if row is None:
            return SlotInfo(False)
        return SlotInfo(True, row[0], row[1], row[2], row[3])
    finally:
        if own:
            connection.close()


def drop_slot(settings: Settings, connection: Any = None) -> None:
    """Drop the slot, ending the connection that streams from it (there is at most one)."""
    own = connection is None
    connection = connection or _connect(settings)
    try:
        with connection.cursor() as cur:
            for _ in range(50):
                cur.execute(
                    "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = %s AND active_pid IS NOT NULL",
                    (settings.PI_CHANGEFEED_SLOT,),
                )
                cur.execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s AND NOT active",
                    (settings.PI_CHANGEFEED_SLOT,),
                )
                cur.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (settings.PI_CHANGEFEED_SLOT,))
                if cur.fetchone() is None:
                    return
                time.sleep(0.1)  # the terminated walsender is still releasing the slot
    finally:
        if own:
            connection.close()


def check_lag(settings: Settings) -> SlotInfo | None:
    """Read the slot's lag into ``pi status``; drop a slot past ``PI_CHANGEFEED_MAX_LAG_BYTES`` (or invalidated) and
    ask for a full compare of every live workspace. ``None`` when there is no slot to check."""
    slot = settings.PI_CHANGEFEED_SLOT
    try:
        info = slot_info(settings)
    except Unavailable:
        return None
    if not info.exists:
        return info
    requests.save_status(slot, lag_bytes=info.lag_bytes, confirmed_lsn=info.confirmed_lsn, wal_status=info.wal_status)
    limit = settings.PI_CHANGEFEED_MAX_LAG_BYTES
    if (info.lag_bytes or 0) > limit or info.wal_status == "lost":
        why = f"wal_status={info.wal_status}" if info.wal_status == "lost" else f"{info.lag_bytes} bytes behind (limit {limit})"
        logger.error(
            "change feed: slot {} is {}: dropped so Plane's disk cannot fill; polling plus a full compare of every live "
            "workspace until the feed catches up",
            slot,
            why,
        )
        drop_slot(settings)
        requests.save_status(slot, mode="polling", reason=f"slot dropped: {why}")
        compare_everything(f"change feed slot dropped ({why})")
    return info


# ---------------------------------------------------------------------- workspaces
def kept_workspaces(among: Iterable[str] | None = None) -> set[str]:
    """Workspaces the index keeps (live-synced, or with a vectorization queued or running), all or among *among*."""
    registry = current_jobs()
    ids = None if among is None else sorted(set(among))
    kept = set(registry.live_sync_workspaces(ids))
    with get_database().session() as session:
        query = sql_select(WorkspaceVectorization.workspace_id).where(WorkspaceVectorization.status.in_(JobStatus.ACTIVE))
        if ids is not None:
            for start in range(0, len(ids), 500):
                kept.update(session.scalars(query.where(WorkspaceVectorization.workspace_id.in_(ids[start : start + 500]))))
        else:
            kept.update(session.scalars(query))
    return kept


def compare_everything(path: str) -> int:
    """Flag every kept workspace with a compare request (after the slot was dropped, recreated or truncated)."""
    return compare_requests.flag_for_compare(kept_workspaces(), path=path)


def workspaces_in_ledger(document_ids: Iterable[str]) -> set[str]:
    ids = sorted(set(document_ids))
    found: set[str] = set()
    with get_database().session() as session:
        for start in range(0, len(ids), 500):
            found.update(
                ws
                for ws in session.scalars(
                    sql_select(IndexedDocument.workspace_id).where(IndexedDocument.document_id.in_(ids[start : start + 500]))
                )
                if ws
            )
    return found


class Dispatcher:
    """Send a live sync to each flagged live workspace now; one whose sync is running is sent again once it ended."""

    def __init__(self) -> None:
        self.waiting: set[str] = set()
        self.checked = 0.0

    def add(self, workspace_ids: Iterable[str]) -> None:
        self.waiting.update(workspace_ids)
        self.checked = 0.0

    def run(self, every: float = 0.25) -> int:
        if not self.waiting or time.monotonic() - self.checked < every:
            return 0
        self.checked = time.monotonic()
        lease = current_leases()
        settings = runtime.get_registry().settings
        live = set(current_jobs().live_sync_workspaces(self.waiting))
        self.waiting &= live  # a workspace being vectorized: the job, then the tick, take it
        held = lease.held([name for ws in self.waiting for name in (workspace_lease(ws), queued_marker(ws))])
        sent = 0
        for ws in sorted(self.waiting):
            if workspace_lease(ws) in held:
                continue  # a sync is running: it may have looked before the change; send another once it ended
            self.waiting.discard(ws)
            if queued_marker(ws) in held:
                continue  # one is queued and has not started: it will see the flag
            if lease.acquire(queued_marker(ws), "changefeed", seconds=max(2 * settings.CELERY_VECTOR_SYNC_INTERVAL, 10)):
                send_task(LIVE_SYNC_TASK, workspace_id=ws)
                sent += 1
        return sent


# ---------------------------------------------------------------------- the consumer
@dataclass
class _Pending:
    """What committed transactions named, not yet in the PI database."""

    #: workspaces to compare (a change the cursor may not see)
    workspaces: set[str] = field(default_factory=set)
    #: workspaces whose changes the cursor sees (a new updated_at): flagged, not compared
    flagged: set[str] = field(default_factory=set)
    #: documents deleted by key only: their workspaces, from the ledger, are compared
    documents: set[str] = field(default_factory=set)
    everything: bool = False
    end_lsn: int = 0
    transactions: int = 0
    since: float = 0.0

    def merge(self, other: _Pending) -> None:
        if not self.transactions:
            self.since = time.monotonic()
        self.workspaces |= other.workspaces
        self.flagged |= other.flagged
        self.documents |= other.documents
        self.everything |= other.everything
        self.end_lsn = max(self.end_lsn, other.end_lsn)
        self.transactions += 1


def _stamp(value: Any) -> datetime | None:
    """A ``timestamptz`` column as logical replication writes it (``2026-05-19 10:00:00.123+00``)."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


class Consumer:
    """Streams the slot and flags what it names; see the module docstring. ``run()`` returns when *stop* is set or
    *keep_going* (the lease) says no; it raises :class:`SlotGone` and connection errors for its caller to handle."""

    def __init__(
        self,
        settings: Settings,
        stop: threading.Event | None = None,
        keep_going: Callable[[], bool] = lambda: True,
        dispatch: bool = True,
    ) -> None:
        self.settings = settings
        self.stop = stop or threading.Event()
        self.keep_going = keep_going
        self.watch = watched()
        self.decoder = Decoder()
        self.transaction: _Pending | None = None
        self.pending = _Pending()
        self.confirmed = 0
        self.dispatcher = Dispatcher() if dispatch else None
        self.stats = {"transactions": 0, "changes": 0, "flushes": 0, "flagged": 0, "compared": 0}
        #: (table, row id) -> the updated_at of the row's last version seen by this consumer (see :meth:`covered`)
        self.stamps: dict[tuple[str, str], datetime] = {}
        self.half_overlap = timedelta(seconds=settings.PI_SYNC_OVERLAP_SECONDS / 2)
        self.first_commit: datetime | None = None
        self.commit_time: datetime | None = None

    # -- messages
    def handle(self, message: Any) -> None:
        if isinstance(message, Begin):
            self.transaction = _Pending()
            self.commit_time = message.commit_time
            self.first_commit = self.first_commit or message.commit_time
        elif isinstance(message, Change):
            self.changed(message)
        elif isinstance(message, Truncate):
            names = [self.decoder.relations[oid].name for oid in message.relations if oid in self.decoder.relations]
            if any(name in self.watch for name in names) and self.transaction is not None:
                logger.warning("change feed: TRUNCATE of {}: every live workspace is compared", ", ".join(names))
                self.transaction.everything = True
        elif isinstance(message, Commit):
            if self.transaction is not None:
                self.transaction.end_lsn = message.end_lsn
                if (
                    self.transaction.workspaces
                    or self.transaction.flagged
                    or self.transaction.documents
                    or self.transaction.everything
                ):
                    self.pending.merge(self.transaction)
                else:  # nothing watched (pgoutput before 15 sends empty transactions): confirmable as is
                    self.pending.end_lsn = max(self.pending.end_lsn, message.end_lsn)
                self.stats["transactions"] += 1
            self.transaction = None
        elif isinstance(message, Relation):
            pass  # the decoder keeps it

    def changed(self, change: Change) -> None:
        relation = self.decoder.relations[change.relation]
        watchers = self.watch.get(relation.name)
        if not watchers or self.transaction is None:
            return
        self.stats["changes"] += 1
        resolved = unresolved = False
        target = self.transaction.flagged if self.covered(relation.name, change) else self.transaction.workspaces
        for row in (change.row, change.old):
            if row is None:
                continue
            for watcher in watchers:
                named = watcher.map_row(row)
                if named is not None:
                    target.update(named)
                    resolved = True
                elif watcher.documents and row.get("id"):
                    self.transaction.documents.add(f"{watcher.source}:{row['id']}")
                    resolved = True
                else:
                    unresolved = True
        if unresolved and not resolved:
            logger.warning(
                "change feed: a {} of {} names no workspace (replica identity not FULL: run pi changefeed setup): every "
                "live workspace is compared",
                change.op.upper(),
                relation.name,
            )
            self.transaction.everything = True

    def covered(self, table: str, change: Change) -> bool:
        """Whether the cursors will see this change by its ``updated_at``, so the workspace needs no compare.

        An INSERT or UPDATE is seen by the next cursor scan when its ``updated_at`` is within half the overlap window of
        its commit (``PI_SYNC_OVERLAP_SECONDS``: the scan re-reads that far back) and the row did not already carry
        that very ``updated_at`` (a scan that saw it then skips the row: what Plane's ``bulk_update`` and
        ``QuerySet.update`` leave). This consumer remembers the stamps it saw for the overlap window, so it can tell
        only for rows stamped half a window after the first commit it read; everything else (deletes, truncates,
        stamps older than the window: late commits, a key change) is compared."""
        row = change.row
        stamp, row_id = _stamp(row.get("updated_at")), row.get("id")
        if change.op == "delete" or stamp is None or not isinstance(row_id, str) or change.key_only:
            return False
        previous = self.stamps.get((table, row_id))
        self.stamps[(table, row_id)] = stamp
        if self.commit_time is None or self.first_commit is None or stamp <= self.commit_time - self.half_overlap:
            return False
        if change.old is not None:  # REPLICA IDENTITY FULL: the previous version's own stamp
            return _stamp(change.old.get("updated_at")) not in (None, stamp)
        return previous != stamp and stamp > self.first_commit + self.half_overlap

    def forget_old_stamps(self) -> None:
        """Drop remembered stamps too old to matter (older than a whole overlap window before the last commit)."""
        if self.commit_time is not None and len(self.stamps) > 1000:
            floor = self.commit_time - 2 * self.half_overlap
            self.stamps = {key: stamp for key, stamp in self.stamps.items() if stamp > floor}

    # -- flushing
    def flush(self, cursor: Any) -> None:
        """Commit what the pending transactions named to the PI database, then confirm their end LSN."""
        pending, self.pending = self.pending, _Pending()
        if pending.transactions:
            compare = set(pending.workspaces) | workspaces_in_ledger(pending.documents)
            kept = kept_workspaces() if pending.everything else kept_workspaces(compare | pending.flagged)
            compared = kept if pending.everything else kept & compare
            if compared:
                compare_requests.flag_for_compare(compared, path="change feed (truncate)" if pending.everything else compare_requests.FEED_PATH)
            if kept - compared:
                compare_requests.flag_for_compare(kept - compared, compare=False)
            self.stats["flagged"] += len(kept)
            self.stats["compared"] += len(compared)
            self.stats["flushes"] += 1
            self.forget_old_stamps()
            if self.dispatcher is not None:
                self.dispatcher.add(kept)
        if pending.end_lsn > self.confirmed:
            cursor.send_feedback(flush_lsn=pending.end_lsn)  # only now: the flags above are committed
            self.confirmed = pending.end_lsn

    def idle_feedback(self, cursor: Any) -> None:
        """Nothing pending and no transaction half-read: everything the server sent is handled, so the end of the last
        transaction, or the server's last sent position (a keepalive's), is confirmable."""
        position = max(self.confirmed, self.pending.end_lsn, cursor.wal_end or 0)
        self.pending = _Pending()
        cursor.send_feedback(flush_lsn=position, force=True)
        self.confirmed = position

    # -- the loop
    def run(self) -> None:
        import psycopg2

        slot, settings = self.settings.PI_CHANGEFEED_SLOT, self.settings
        info = slot_info(settings)
        if not info.exists or info.wal_status == "lost":
            raise SlotGone(f"slot {slot} {'is invalidated' if info.exists else 'does not exist'}")
        connection = _connect(settings, replication=True)
        try:
            cursor = connection.cursor()
            try:
                cursor.start_replication(
                    slot_name=slot,
                    decode=False,
                    options={"proto_version": "1", "publication_names": settings.PI_CHANGEFEED_PUBLICATION},
                    status_interval=max(1.0, settings.PI_CHANGEFEED_FEEDBACK_SECONDS),
                )
            except psycopg2.errors.UndefinedObject as exc:
                raise SlotGone(str(exc).strip()) from None
            requests.save_status(slot, mode="feed", reason=None, holder=f"{socket.gethostname()}:{os.getpid()}")
            logger.info("change feed: streaming slot {} (publication {})", slot, settings.PI_CHANGEFEED_PUBLICATION)
            batch, feedback = settings.PI_CHANGEFEED_BATCH_SECONDS, settings.PI_CHANGEFEED_FEEDBACK_SECONDS
            last_feedback = last_chores = time.monotonic()
            while not self.stop.is_set():
                message = cursor.read_message()
                if message is not None:
                    self.handle(self.decoder.parse(message.payload))
                now = time.monotonic()
                if self.pending.transactions:
                    if now - self.pending.since >= batch or self.pending.transactions >= 1000:
                        self.flush(cursor)
                        last_feedback = now
                elif self.transaction is None and (
                    now - last_feedback >= feedback or (message is None and self.pending.end_lsn > self.confirmed)
                ):
                    self.idle_feedback(cursor)
                    last_feedback = now
                if now - last_chores >= 0.25:
                    last_chores = now
                    if self.dispatcher is not None:
                        self.dispatcher.run()
                    if not self.keep_going():
                        return
                if message is None:
                    timeout = feedback
                    if self.pending.transactions:
                        timeout = max(0.0, batch - (now - self.pending.since))
                    if self.dispatcher is not None and self.dispatcher.waiting:
                        timeout = min(timeout, 0.25)
                    select.select([connection], [], [], min(timeout, 1.0))
        finally:
            connection.close()


# ---------------------------------------------------------------------- running it: the worker's thread, pi changefeed run
def lease_name(settings: Settings) -> str:
    return f"changefeed:{settings.PI_CHANGEFEED_SLOT}"


def recreate(settings: Settings, why: str) -> None:
    """Create the slot again (and whatever else set-up made that is gone), then compare every kept workspace."""
    setup(settings)
    logger.error("change feed: slot {} {}: recreated; every live workspace gets a full compare", settings.PI_CHANGEFEED_SLOT, why)
    compare_everything(f"change feed slot recreated ({why})")


def availability(settings: Settings) -> str | None:
    """Why the feed cannot run here (``None``: it can)."""
    if not settings.PI_CHANGEFEED_ENABLED:
        return "PI_CHANGEFEED_ENABLED is off"
    if replication_url(settings) is None:
        return not_postgresql(settings)
    try:
        found = plan(settings)
    except Unavailable as exc:
        return exc.reason
    if found.wal_level != "logical":
        return f"Plane's PostgreSQL has wal_level={found.wal_level} (logical replication needs logical)"
    if not found.can_replicate:
        return f"the role {found.role!r} has no REPLICATION attribute (pi changefeed setup prints the SQL)"
    if not found.slot_exists and not was_set_up(settings):
        return "not set up (run pi changefeed setup)"
    return None


class Runner:
    """Runs the consumer whenever this process holds the feed's lease; checks the slot's lag either way.

    ``run()`` blocks until *stop* is set: the worker runs it in a thread, ``pi changefeed run`` in its main thread."""

    def __init__(
        self, settings: Settings, stop: threading.Event | None = None, retry_seconds: float = 5.0, dispatch: bool = True
    ) -> None:
        self.settings = settings
        self.dispatch = dispatch
        self.stop = stop or threading.Event()
        self.retry_seconds = retry_seconds
        self.holder = f"changefeed:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.said: object = Runner  # nothing said yet (a sentinel: None means "on")
        self.lag_checked = 0.0

    def say(self, reason: str | None) -> None:
        """Log the feed's state once per change of it (start-up: polling or not, and why)."""
        if reason == self.said:
            return
        self.said = reason
        slot = self.settings.PI_CHANGEFEED_SLOT
        if reason is None:
            logger.info("change feed: on (slot {}); polling updated_at stays on as the safety net", slot)
        else:
            logger.warning("change feed: off ({}): changes are found by polling updated_at, as before", reason)
            try:
                requests.save_status(slot, mode="polling", reason=reason)
            except Exception:  # noqa: BLE001 - the PI database may be down: the log said it
                pass

    def lag_check(self) -> None:
        if time.monotonic() - self.lag_checked >= self.settings.PI_CHANGEFEED_LAG_CHECK_SECONDS:
            self.lag_checked = time.monotonic()
            check_lag(self.settings)

    def renew(self) -> bool:
        try:
            self.lag_check()
            current_leases().renew(lease_name(self.settings), self.holder)
            return True
        except Exception as exc:  # noqa: BLE001 - lost lease, or the PI database is down: stop streaming
            logger.warning("change feed: stops streaming: {}: {}", type(exc).__name__, exc)
            return False

    def run(self) -> None:
        name = lease_name(self.settings)
        renew_every = max(1.0, self.settings.PI_LEASE_SECONDS / 3)
        failures = 0
        try:
            while not self.stop.is_set():
                wait = self.retry_seconds
                try:
                    reason = availability(self.settings)
                    self.say(reason)
                    if reason is None:
                        self.lag_check()
                        if current_leases().acquire(name, self.holder):
                            self.stream(renew_every)
                            failures = 0
                    else:
                        wait = max(wait, self.settings.PI_CHANGEFEED_LAG_CHECK_SECONDS)
                except Exception as exc:  # noqa: BLE001 - the feed must never take the worker down; polling goes on
                    failures += 1
                    wait = min(0.5 * 2**failures, 30.0)
                    logger.warning(
                        "change feed: {}: {} (again in {:.1f} s; polling goes on)", type(exc).__name__, str(exc).strip(), wait
                    )
                self.stop.wait(wait)
        finally:
            try:
                if name in current_leases().held([name]) and current_leases().held([name])[name] == self.holder:
                    requests.save_status(
                        self.settings.PI_CHANGEFEED_SLOT, mode="polling", reason="the consumer stopped; another worker takes over"
                    )
                current_leases().release(name, self.holder)
            except Exception:  # noqa: BLE001 - the PI database may be down: the lease expires by itself
                pass

    def stream(self, renew_every: float) -> None:
        renewed = [time.monotonic()]

        def keep_going() -> bool:
            if time.monotonic() - renewed[0] < renew_every:
                return True
            renewed[0] = time.monotonic()
            return self.renew()

        while not self.stop.is_set():
            try:
                Consumer(self.settings, self.stop, keep_going, dispatch=self.dispatch).run()
                return
            except SlotGone as exc:
                recreate(self.settings, f"vanished ({exc})")
