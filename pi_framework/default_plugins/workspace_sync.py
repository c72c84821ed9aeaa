"""Vectorization and live sync of every ``scope="workspace"`` source (built-in plugin ``workspace_sync``).

Any installed plugin whose source has ``scope="workspace"`` is vectorized and kept in sync by these
tasks with no code of its own:

* ``vectorize_workspace(workspace_id)``: full pass of every source (``changes(ws, None)``) through
  the pipeline; documents the ledger already holds at the same ``updated_at`` are skipped without
  being read twice, so a resumed job embeds only what is missing. Progress goes to the job row, its
  heartbeat, and the Celery task state ``PROGRESS``. On completion every visible document is
  checked against the ledger and the sinks, then live sync is switched on.
* ``trigger_live_sync`` (beat ``trigger-live-sync``): one ``process_workspace_live_sync`` per
  workspace whose latest job succeeded and that has at most ``PI_LIVE_SYNC_MAX_MISSING`` pending
  changes (the rest is left to the plan sync's stale recovery).
* ``process_workspace_live_sync(workspace_id)``: applies the changes since the stored cursors,
  and every ``PI_RECONCILE_INTERVAL`` reconciles ids (hard deletes, anything missed).
* ``redispatch_lost_jobs`` (beat ``redispatch-lost-jobs``): work survives the broker.

The plain functions (:func:`request_vectorization`, :func:`vectorize`, :func:`live_sync`,
:func:`missing_or_stale_count`, :func:`forget_workspace`) are what the tasks wrap; other plugins
(``pi_plans``) call them directly.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any

import click
from loguru import logger
from sqlalchemy import delete, select
from sqlalchemy.exc import DBAPIError

from pi_framework import hookimpl, runtime
from pi_framework.contributions import HealthCheck, PeriodicJob, Source
from pi_framework.db import DatabaseUnavailable, get_database
from pi_framework.db.models import IndexedDocument, JobStatus, SyncState, utcnow
from pi_framework.default_plugins.workspace_jobs import (
    LEASE_SOURCE,
    LIVE_SYNC_TASK,
    VECTORIZE_TASK,
    JobLost,
    Jobs,
    as_utc,
    send_task,
)
from pi_framework.pipeline.documents import Document, chunk_id
from pi_framework.pipeline.indexer import Indexer, IndexStats
from pi_framework.pipeline.ledger import Ledger, LedgerEntry, same_instant
from pi_framework.sinks.base import SinkError

RECONCILE_SOURCE = "reconcile"
#: ``SyncState.source`` of the marker "this workspace has had pending work since ..." (scope = workspace)
PENDING_SOURCE = "pending-work"
#: documents between two heartbeats when nothing needs embedding (resumed jobs skip fast)
_SKIP_HEARTBEAT_EVERY = 1000
#: documents per ledger lookup while measuring pending work
_PENDING_BATCH = 200
_TRANSIENT = (DBAPIError, DatabaseUnavailable, SinkError, ConnectionError, TimeoutError)

Progress = Callable[[int, int | None], None]


def _jobs() -> Jobs:
    return Jobs(get_database(), runtime.get_registry().settings)


def _sources() -> list[Source]:
    return runtime.get_registry().workspace_sources()


# ---------------------------------------------------------------------- cursors and the ledger
def load_cursor(source: str, workspace_id: str) -> dict[str, Any] | None:
    with get_database().session() as session:
        state = session.get(SyncState, (source, workspace_id))
        return dict(state.cursor) if state is not None else None


def save_cursor(source: str, workspace_id: str, cursor: dict[str, Any]) -> None:
    with get_database().session() as session:
        session.merge(SyncState(source=source, scope=workspace_id, cursor=cursor, updated_at=utcnow()))


def ledger_versions(workspace_id: str, source: str) -> dict[str, datetime | None]:
    """``document id -> source updated_at`` of what the ledger holds for one source of a workspace."""
    with get_database().session() as session:
        rows = session.execute(
            select(IndexedDocument.document_id, IndexedDocument.source_updated_at).where(
                IndexedDocument.workspace_id == workspace_id, IndexedDocument.source == source
            )
        )
        return {document_id: as_utc(stamp) for document_id, stamp in rows}


def visible_versions(source: Source, workspace_id: str) -> Iterable[tuple[str, datetime | None]]:
    """The source's ``visible_versions`` when it has one (staleness), else its ids (presence only)."""
    versions = getattr(source, "visible_versions", None)
    if versions is not None:
        return ((document_id, as_utc(stamp)) for document_id, stamp in versions(workspace_id))
    return ((document_id, None) for document_id in source.visible_ids(workspace_id))


def compare(source: Source, workspace_id: str) -> tuple[set[str], set[str]]:
    """``(to_index, to_delete)``: visible documents missing or stale in the ledger, and ledger entries no longer visible."""
    ledger = ledger_versions(workspace_id, source.name)
    to_index: set[str] = set()
    for document_id, stamp in visible_versions(source, workspace_id):
        indexed = ledger.pop(document_id, "missing")
        if indexed == "missing" or (stamp is not None and indexed != stamp):
            to_index.add(document_id)
    return to_index, set(ledger)


def missing_or_stale_count(workspace_id: str) -> int:
    """Documents of every workspace source that are missing, stale or left over in the index (a full comparison)."""
    total = 0
    for source in _sources():
        to_index, to_delete = compare(source, workspace_id)
        total += len(to_index) + len(to_delete)
    return total


def _is_pending(document: Document, entry: LedgerEntry | None) -> bool:
    """The index does not hold this version of *document* (a deletion counts only while the ledger still has it)."""
    if document.deleted:
        return entry is not None and (entry.recorded or bool(entry.hashes))
    return entry is None or not entry.recorded or not same_instant(entry.source_updated_at, document.updated_at)


def pending_changes(workspace_id: str, limit: int) -> int:
    """How much work is pending in *workspace_id*: **the** measure of pending work (counting stops once above *limit*).

    A document counts when it changed since its source's cursor and the ledger does not hold that
    version (changed, new, or hidden/deleted but still indexed). Documents re-read only because of the
    cursor's overlap window do not count, so the measure falls to 0 once the work is done, and the
    trigger (live sync up to ``limit``, a bulk re-feed above it) uses nothing else. A source without a
    cursor (installed after the vectorization) counts what the ledger lacks or holds in excess.
    """
    ledger = Ledger(get_database())
    count = 0
    for source in _sources():
        cursor = load_cursor(source.name, workspace_id)
        if cursor is None:
            to_index, to_delete = compare(source, workspace_id)
            count += len(to_index) + len(to_delete)
        else:
            for batch in _batched(source.changes(workspace_id, cursor).documents, _PENDING_BATCH):
                entries = ledger.lookup([document.id for document in batch])
                count += sum(_is_pending(document, entries.get(document.id)) for document in batch)
                if count > limit:
                    return count
        if count > limit:
            return count
    return count


def _batched(items: Iterable[Document], size: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def refeed(source: Source, workspace_id: str, document_ids: set[str], indexer: Indexer) -> IndexStats:
    """Index the named documents of *source* again (one streamed pass over the workspace)."""
    wanted = set(document_ids)
    return indexer.index(document for document in source.iter_documents(workspace_id) if document.id in wanted)


# ---------------------------------------------------------------------- vectorization
def request_vectorization(workspace_id: str) -> int:
    """Queue a vectorization of *workspace_id* (or return the active job) and dispatch it when a slot is free."""
    return _jobs().request(workspace_id)


def vectorize(
    workspace_id: str, task_id: str | None = None, on_progress: Progress | None = None, job_id: int | None = None
) -> dict[str, Any]:
    """Run job *job_id* (default: the workspace's active job, or a new one) in this process; see the module docstring."""
    task_id = task_id or f"local-{uuid.uuid4()}"
    jobs = _jobs()
    claim = jobs.claim(workspace_id, task_id, job_id)
    log = logger.bind(workspace=workspace_id, job=claim.job_id)
    if not claim.claimed:
        log.info("vectorize {}: not started: {}", workspace_id, claim.reason)
        return {"status": "skipped", "job_id": claim.job_id, "reason": claim.reason}
    try:
        result = _Vectorization(workspace_id, claim.job_id, task_id, jobs, on_progress).run()
    except JobLost as exc:
        log.warning("vectorize {}: {}", workspace_id, exc)
        return {"status": "lost", "job_id": claim.job_id, "reason": str(exc)}
    except _TRANSIENT as exc:
        jobs.finish(claim.job_id, task_id, JobStatus.QUEUED, f"interrupted, will resume: {type(exc).__name__}: {exc}")
        log.warning("vectorize {}: interrupted ({}: {}); job re-queued", workspace_id, type(exc).__name__, exc)
        raise
    except Exception as exc:
        jobs.finish(claim.job_id, task_id, JobStatus.FAILED, f"{type(exc).__name__}: {exc}")
        log.exception("vectorize {}: failed", workspace_id)
        raise
    jobs.finish(claim.job_id, task_id, result["status"], result.get("error"))
    log.info("vectorize {}: {}", workspace_id, result)
    return result


class _Vectorization:
    """One run of a job: index every source, validate, store the cursors."""

    def __init__(self, workspace_id: str, job_id: int, task_id: str, jobs: Jobs, on_progress: Progress | None) -> None:
        self.workspace_id, self.job_id, self.task_id, self.jobs = workspace_id, job_id, task_id, jobs
        self.on_progress = on_progress
        self.indexer = Indexer()
        self.done = 0
        self.total: int | None = None
        self.skipped = 0
        self.totals = IndexStats()

    def report(self) -> None:
        self.jobs.heartbeat(self.job_id, self.task_id, self.done, self.total)
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)

    def _add(self, stats: IndexStats) -> None:
        for item in fields(IndexStats):
            if item.name == "failed":
                self.totals.failed.update(stats.failed)
            else:
                setattr(self.totals, item.name, getattr(self.totals, item.name) + getattr(stats, item.name))

    def run(self) -> dict[str, Any]:
        sources = _sources()
        self.total = sum(sum(1 for _ in source.visible_ids(self.workspace_id)) for source in sources)
        self.report()
        for source in sources:
            self.index_source(source)
        missing = self.validate(sources)
        save_cursor(RECONCILE_SOURCE, self.workspace_id, {"at": utcnow().isoformat()})  # every id was just compared
        result: dict[str, Any] = {
            "status": JobStatus.SUCCESS if not missing else JobStatus.FAILED,
            "job_id": self.job_id,
            "workspace_id": self.workspace_id,
            "documents_total": self.total,
            "documents_already_indexed": self.skipped,
            **self.totals.as_dict(),
        }
        result["failed"] = len(self.totals.failed)
        if missing:
            sample = ", ".join(sorted(missing)[:5])
            result["error"] = f"{len(missing)} visible document(s) not in the index after a repair pass: {sample}"
        elif self.totals.failed:
            logger.warning(
                "vectorize {}: {} document(s) could not be indexed (bad input, logged above)",
                self.workspace_id,
                len(self.totals.failed),
            )
        return result

    def index_source(self, source: Source) -> None:
        indexed = ledger_versions(self.workspace_id, source.name)
        changes = source.changes(self.workspace_id, None)
        base, counts = self.done, {"skipped": 0, "seen": 0}

        def update() -> None:
            self.done = base + counts["skipped"] + counts["seen"]
            self.report()

        def todo() -> Iterator[Document]:
            for document in changes.documents:
                stamp = as_utc(document.updated_at)
                if not document.deleted and stamp is not None and indexed.get(document.id) == stamp:
                    counts["skipped"] += 1
                    if counts["skipped"] % _SKIP_HEARTBEAT_EVERY == 0:
                        update()
                    continue
                yield document

        def progress(stats: IndexStats) -> None:
            counts["seen"] = stats.documents_seen
            update()

        stats = self.indexer.index(todo(), progress=progress)
        counts["seen"] = stats.documents_seen
        self.skipped += counts["skipped"]
        self._add(stats)
        update()
        save_cursor(source.name, self.workspace_id, changes.cursor())

    def validate(self, sources: list[Source]) -> set[str]:
        """Every visible document in the ledger and in every sink; leftovers removed; one repair pass."""
        missing: set[str] = set()
        for source in sources:
            to_index, to_delete = compare(source, self.workspace_id)
            if to_delete:
                self.indexer.delete_documents(to_delete)
            to_index |= self.not_in_sinks(source)
            to_index -= set(self.totals.failed)
            if to_index:
                logger.warning(
                    "vectorize {}: {} {} document(s) missing from the index: repairing",
                    self.workspace_id,
                    len(to_index),
                    source.name,
                )
                self.indexer.delete_documents(to_index)
                self._add(refeed(source, self.workspace_id, to_index, self.indexer))
                again, _ = compare(source, self.workspace_id)
                missing |= (again | self.not_in_sinks(source)) - set(self.totals.failed)
        return missing

    def not_in_sinks(self, source: Source) -> set[str]:
        """Recorded documents whose first chunk some sink does not have."""
        with get_database().session() as session:
            recorded = [
                document_id
                for document_id, chunks in session.execute(
                    select(IndexedDocument.document_id, IndexedDocument.chunk_count).where(
                        IndexedDocument.workspace_id == self.workspace_id, IndexedDocument.source == source.name
                    )
                )
                if chunks
            ]
        absent: set[str] = set()
        for start in range(0, len(recorded), 500):
            batch = recorded[start : start + 500]
            wanted = {chunk_id(document_id, 0): document_id for document_id in batch}
            for sink in self.indexer.sinks:
                present = sink.existing(list(wanted))
                absent |= {document_id for first, document_id in wanted.items() if first not in present}
        return absent


# ---------------------------------------------------------------------- live sync
def reconcile_due(workspace_id: str, interval: int) -> bool:
    cursor = load_cursor(RECONCILE_SOURCE, workspace_id)
    last = datetime.fromisoformat(cursor["at"]) if cursor and cursor.get("at") else None
    return last is None or utcnow() - last >= timedelta(seconds=interval)


def reconcile(workspace_id: str, indexer: Indexer | None = None) -> dict[str, int]:
    """Compare every visible id with the ledger: remove what disappeared (hard deletes), index what is missing or stale."""
    indexer = indexer or Indexer()
    counts = {"reconcile_deleted": 0, "reconcile_indexed": 0}
    for source in _sources():
        to_index, to_delete = compare(source, workspace_id)
        if to_delete:
            counts["reconcile_deleted"] += indexer.delete_documents(to_delete)
        if to_index:
            counts["reconcile_indexed"] += refeed(source, workspace_id, to_index, indexer).documents_indexed
    save_cursor(RECONCILE_SOURCE, workspace_id, {"at": utcnow().isoformat()})
    if any(counts.values()):
        logger.bind(workspace=workspace_id).info("reconcile {}: {}", workspace_id, counts)
    return counts


def live_sync(workspace_id: str, task_id: str | None = None, force_reconcile: bool = False) -> dict[str, Any]:
    """Apply every workspace source's changes since its cursor; at most one run per workspace at a time."""
    holder = task_id or f"local-{uuid.uuid4()}"
    jobs = _jobs()
    if not jobs.live_sync_enabled(workspace_id):  # downgraded, or a vectorization job owns the workspace now
        return {"status": "skipped", "reason": "live sync is off for this workspace"}
    if not jobs.acquire_lease(workspace_id, holder):
        return {"status": "skipped", "reason": "a live sync of this workspace is running"}
    settings = runtime.get_registry().settings
    indexer = Indexer()
    result: dict[str, Any] = {"status": "success", "workspace_id": workspace_id}
    try:
        for source in _sources():
            changes = source.changes(workspace_id, load_cursor(source.name, workspace_id))
            stats = indexer.index(changes.documents, progress=lambda _stats: jobs.renew_lease(workspace_id))
            save_cursor(source.name, workspace_id, changes.cursor())
            for name, value in stats.as_dict().items():
                value = len(value) if isinstance(value, dict) else value
                result[name] = result.get(name, 0) + value
        if force_reconcile or reconcile_due(workspace_id, settings.PI_RECONCILE_INTERVAL):
            result.update(reconcile(workspace_id, indexer))
        jobs.live_synced(workspace_id)
    finally:
        jobs.release_lease(workspace_id)
    return result


def trigger(max_missing: int | None = None) -> dict[str, int]:
    """One tick: every live-synced workspace with pending work is taken by exactly one path.

    :func:`pending_changes` up to ``PI_LIVE_SYNC_MAX_MISSING``: a live sync is queued; above it: a bulk
    re-feed (a vectorization job, which skips what the ledger holds, deletes what is no longer visible,
    shows progress and moves the cursors when done) is queued at once. While that job is active the
    workspace is not live-synced, so the two never overlap. A workspace with nothing pending gets a live
    sync only when its id reconcile is due.
    """
    settings = runtime.get_registry().settings
    limit = settings.PI_LIVE_SYNC_MAX_MISSING if max_missing is None else max_missing
    jobs = _jobs()
    counts = {"dispatched": 0, "refeed": 0, "idle": 0, "busy": 0, "failed": 0}
    marked = pending_markers()
    for workspace_id in jobs.live_sync_workspaces():
        log = logger.bind(workspace=workspace_id)
        if jobs.lease_held(workspace_id):
            counts["busy"] += 1
            continue
        try:
            pending = pending_changes(workspace_id, limit)
            due = pending == 0 and reconcile_due(workspace_id, settings.PI_RECONCILE_INTERVAL)
        except Exception as exc:  # noqa: BLE001 - one workspace's problem must not stop the others
            counts["failed"] += 1
            log.error("trigger_live_sync: workspace {}: {}: {}", workspace_id, type(exc).__name__, exc)
            continue
        mark_pending(workspace_id, pending, marked.get(workspace_id))
        if pending > limit:
            job_id = jobs.request(workspace_id)
            mark_pending(workspace_id, pending, marked.get(workspace_id), f"bulk re-feed job {job_id}")
            counts["refeed"] += 1
            log.warning(
                "trigger_live_sync: workspace {} has more than {} pending changes: bulk re-feed job {} queued",
                workspace_id,
                limit,
                job_id,
            )
        elif pending or due:
            send_task(LIVE_SYNC_TASK, workspace_id=workspace_id)
            counts["dispatched"] += 1
        else:
            counts["idle"] += 1
    return counts


def pending_markers() -> dict[str, dict[str, Any]]:
    """``workspace -> {since, pending, path}`` of every workspace that had pending work at its last tick."""
    with get_database().session() as session:
        return {
            state.scope: dict(state.cursor)
            for state in session.scalars(select(SyncState).where(SyncState.source == PENDING_SOURCE))
        }


def mark_pending(workspace_id: str, pending: int, marker: dict[str, Any] | None, path: str = "live sync") -> None:
    """Remember since when *workspace_id* has pending work (the marker goes when nothing is pending)."""
    if not pending:
        if marker is not None:
            with get_database().session() as session:
                session.execute(delete(SyncState).where(SyncState.source == PENDING_SOURCE, SyncState.scope == workspace_id))
        return
    since = marker["since"] if marker else utcnow().isoformat()
    cursor = {"since": since, "pending": pending, "path": path}
    if cursor != marker:
        with get_database().session() as session:
            session.merge(SyncState(source=PENDING_SOURCE, scope=workspace_id, cursor=cursor, updated_at=utcnow()))


def stuck_workspaces(older_than: float) -> list[dict[str, Any]]:
    """Workspaces whose pending work is older than *older_than* seconds, each with why it is still pending."""
    jobs = _jobs()
    now = utcnow()
    stuck = []
    for workspace_id, marker in sorted(pending_markers().items()):
        age = (now - datetime.fromisoformat(marker["since"])).total_seconds()
        if age < older_than:
            continue
        job = jobs.latest(workspace_id)
        if job is None or not (job.status == JobStatus.SUCCESS and job.live_sync_enabled):
            why = f"job {job.id} {job.status}" + (f": {job.error}" if job and job.error else "") if job else "no job"
            if job is not None and job.status in JobStatus.ACTIVE:
                why += f" ({job.progress_done}/{job.progress_total or '?'})"
        elif jobs.lease_held(workspace_id):
            why = "a live sync has been running for a long time"
        else:
            why = f"{marker['path']} not caught up (failed documents or failing live syncs: see the worker log)"
        stuck.append(
            {
                "workspace_id": workspace_id,
                "pending_since": marker["since"],
                "seconds": round(age),
                "pending": marker["pending"],
                "why": why,
            }
        )
    return stuck


def forget_workspace(workspace_id: str) -> int:
    """Remove a workspace from every sink and the ledger, drop its cursors, switch its live sync off (downgrade)."""
    removed = Indexer().delete_workspace(workspace_id)
    mine = [source.name for source in _sources()] + [RECONCILE_SOURCE, LEASE_SOURCE, PENDING_SOURCE]
    with get_database().session() as session:
        session.execute(delete(SyncState).where(SyncState.scope == workspace_id, SyncState.source.in_(mine)))
    _jobs().disable_live_sync(workspace_id)
    return removed


# ---------------------------------------------------------------------- Celery tasks
def _publish(task: Any) -> Progress | None:
    """Publish progress as the task state ``PROGRESS`` when a result backend is configured."""
    from celery.backends.base import DisabledBackend

    if task.request.id is None or isinstance(task.backend, DisabledBackend):
        return None
    return lambda done, total: task.update_state(state="PROGRESS", meta={"done": done, "total": total})


def vectorize_workspace(self: Any, workspace_id: str, job_id: int | None = None) -> dict[str, Any]:
    """Celery task ``pi.celery_app.vectorize_workspace`` (``job_id`` is set by the dispatcher; omitted, the active job)."""
    result = vectorize(workspace_id, task_id=self.request.id, on_progress=_publish(self), job_id=job_id)
    if result["status"] == JobStatus.FAILED:
        logger.error("vectorize {}: {}", workspace_id, result.get("error"))
    return result


def trigger_live_sync() -> dict[str, int]:
    """Celery task ``pi.celery_app.trigger_live_sync``."""
    return trigger()


def process_workspace_live_sync(self: Any, workspace_id: str) -> dict[str, Any]:
    """Celery task ``pi.celery_app.process_workspace_live_sync``: retried per ``CELERY_VECTOR_SYNC_*``."""
    settings = runtime.get_registry().settings
    try:
        return live_sync(workspace_id, task_id=self.request.id)
    except Exception as exc:
        if self.request.retries >= settings.CELERY_VECTOR_SYNC_MAX_RETRIES:
            logger.bind(workspace=workspace_id).error(
                "live sync {} failed after {} retries: {}", workspace_id, self.request.retries, exc
            )
            raise
        logger.bind(workspace=workspace_id).warning(
            "live sync {} failed ({}: {}); retrying", workspace_id, type(exc).__name__, exc
        )
        raise self.retry(
            exc=exc, countdown=settings.CELERY_VECTOR_SYNC_RETRY_DELAY, max_retries=settings.CELERY_VECTOR_SYNC_MAX_RETRIES
        ) from exc


def redispatch_lost_jobs() -> dict[str, int]:
    """Celery task ``pi.celery_app.redispatch_lost_jobs``: work survives the broker."""
    counts = _jobs().redispatch_lost()
    if any(counts.values()):
        logger.info("redispatch: {}", counts)
    return counts


# ---------------------------------------------------------------------- hooks
@hookimpl
def register_tasks(register) -> None:  # noqa: ANN001
    register(vectorize_workspace, name=VECTORIZE_TASK, bind=True)
    register(trigger_live_sync, name="pi.celery_app.trigger_live_sync", acks_late=False)
    register(process_workspace_live_sync, name=LIVE_SYNC_TASK, bind=True)
    register(redispatch_lost_jobs, name="pi.celery_app.redispatch_lost_jobs", acks_late=False)


@hookimpl
def register_periodic_jobs(register, settings) -> None:  # noqa: ANN001
    for name, task, every, enabled in (
        (
            "trigger-live-sync",
            "pi.celery_app.trigger_live_sync",
            settings.CELERY_VECTOR_SYNC_INTERVAL,
            settings.CELERY_VECTOR_SYNC_ENABLED,
        ),
        ("redispatch-lost-jobs", "pi.celery_app.redispatch_lost_jobs", settings.PI_REDISPATCH_INTERVAL, True),
    ):
        register(PeriodicJob(name, task, every=every, enabled=enabled))


def check_pending_work() -> dict[str, Any]:
    """Health check ``pending_work``: no workspace has had pending work for longer than ``PI_PENDING_ALERT_SECONDS``."""
    limit = runtime.get_registry().settings.PI_PENDING_ALERT_SECONDS
    stuck = stuck_workspaces(limit)
    if stuck:
        raise RuntimeError(
            f"{len(stuck)} workspace(s) with pending work older than {limit}s: "
            + "; ".join(f"{row['workspace_id']} since {row['pending_since']}: {row['why']}" for row in stuck[:5])
        )
    return {"pending_workspaces": len(pending_markers()), "older_than_seconds": limit}


@hookimpl
def register_health_checks(register) -> None:  # noqa: ANN001
    register(HealthCheck("pending_work", check_pending_work))


@hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.command("vectorize")
    @click.argument("workspace_id")
    @click.option("--now", "in_process", is_flag=True, help="Run here instead of queueing a job for the workers.")
    def vectorize_command(workspace_id: str, in_process: bool) -> None:
        """Vectorize a workspace (every workspace source): queue a job, or run it here with --now."""
        if in_process:
            result = vectorize(workspace_id, on_progress=lambda done, total: click.echo(f"  {done}/{total}", err=True))
            click.echo(json.dumps(result, indent=2, default=str))
        else:
            click.echo(f"job {request_vectorization(workspace_id)} queued for workspace {workspace_id}")

    @cli.command("sync")
    @click.argument("workspace_id")
    @click.option("--reconcile", is_flag=True, help="Also compare every id with the index.")
    def sync_command(workspace_id: str, reconcile: bool) -> None:
        """Apply a workspace's pending changes here (what a live-sync tick does)."""
        click.echo(json.dumps(live_sync(workspace_id, force_reconcile=reconcile), indent=2, default=str))
