"""Vectorization: a full pass of every workspace source through the pipeline, resumable and checkpointed.

Documents the ledger already holds at the same ``updated_at`` are skipped without being read twice,
so a resumed job embeds only what is missing; the same pass is the bulk re-feed the trigger queues
when too much is pending for a live sync. Progress goes to the job row and the Celery task state
``PROGRESS``. On completion every visible document is checked against the ledger and the sinks,
leftovers are deleted, the cursors are stored and live sync is switched on.

The run holds the workspace's write lease (so no live sync writes the workspace meanwhile), renewed
with every heartbeat. What ends a run:

* a transient outage (database, sink, network): the job is re-queued and resumes later (backoff);
* Celery's soft time limit: the job checkpoints (re-queued and sent again at once) and continues in a
  new task, so a workspace of any size finishes on its own;
* a lost lease or job (another task took over): it stops without touching anything;
* a source that cannot run (a bug, a schema problem, Plane not configured or unreachable): the job fails with one
  line naming the source, the cause and the fix (``PI_DISABLE_PLUGINS=<its plugin>``), no traceback, and is retried
  with backoff like any failed job;
* anything else: the job fails with its reason and is retried with backoff (:meth:`Jobs.retry_failed`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from loguru import logger
from sqlalchemy.exc import DBAPIError

from pi_framework.contract.contributions import Source
from pi_framework.contract.documents import Document, chunk_id
from pi_framework.contract.sinks import SinkError
from pi_framework.db import DatabaseUnavailable, get_database
from pi_framework.db.models import JobStatus
from pi_framework.pipeline.indexer import Indexer, IndexStats
from pi_framework.pipeline.ledger import Ledger
from pi_framework.sync import current_jobs, current_leases, sources, state
from pi_framework.sync.compare import compare
from pi_framework.sync.isolation import Guarded, SourceFailed, describe, plugin_of
from pi_framework.sync.jobs import JobLost, as_utc
from pi_framework.sync.leases import Fence, LeaseLost, workspace_lease

#: documents between two heartbeats when nothing needs embedding (resumed jobs skip fast)
_SKIP_HEARTBEAT_EVERY = 1000
TRANSIENT = (DBAPIError, DatabaseUnavailable, SinkError, ConnectionError, TimeoutError)

Progress = Callable[[int, int | None], None]


def request_vectorization(workspace_id: str) -> int:
    """Queue a vectorization of *workspace_id* (or return the active job) and dispatch it when a slot is free."""
    return current_jobs().request(workspace_id)


def refeed(source: Source, workspace_id: str, document_ids: set[str], indexer: Indexer) -> IndexStats:
    """Index the named documents of *source* again (one streamed pass over the workspace)."""
    wanted = set(document_ids)
    return indexer.index(document for document in source.iter_documents(workspace_id) if document.id in wanted)


def vectorize(
    workspace_id: str, task_id: str | None = None, on_progress: Progress | None = None, job_id: int | None = None
) -> dict[str, Any]:
    """Run job *job_id* (default: the workspace's active job, or a new one) in this process; see the module docstring."""
    task_id = task_id or f"local-{uuid.uuid4()}"
    registry = current_jobs()
    claim = registry.claim(workspace_id, task_id, job_id)
    log = logger.bind(workspace=workspace_id, job=claim.job_id)
    if not claim.claimed:
        log.info("vectorize {}: not started: {}", workspace_id, claim.reason)
        return {"status": "skipped", "job_id": claim.job_id, "reason": claim.reason}
    lease, holder = current_leases(), f"vectorize:{task_id}"
    fence = lease.wait(workspace_lease(workspace_id), holder, timeout=2 * lease.seconds)
    if fence is None:
        registry.requeue(claim.job_id, task_id, "a live sync of the workspace is still running: re-queued")
        log.info("vectorize {}: the workspace is being written by another task: job re-queued", workspace_id)
        return {"status": "deferred", "job_id": claim.job_id, "reason": "workspace lease held"}
    try:
        result = _Vectorization(workspace_id, claim.job_id, task_id, fence, on_progress).run()
    except (JobLost, LeaseLost) as exc:
        log.warning("vectorize {}: {}", workspace_id, exc)
        return {"status": "lost", "job_id": claim.job_id, "reason": str(exc)}
    except SoftTimeLimitExceeded:
        registry.requeue(claim.job_id, task_id, "checkpoint at the soft time limit: continues in a new task", at_once=True)
        log.warning("vectorize {}: soft time limit reached: checkpointed, continues in a new task", workspace_id)
        return {"status": "checkpointed", "job_id": claim.job_id}
    except SourceFailed as exc:
        reason = cannot_run(exc)
        registry.finish(claim.job_id, task_id, JobStatus.FAILED, reason)
        log.error("vectorize {}: {}", workspace_id, reason)
        return {"status": JobStatus.FAILED, "job_id": claim.job_id, "workspace_id": workspace_id, "error": reason}
    except TRANSIENT as exc:
        registry.requeue(claim.job_id, task_id, f"interrupted, will resume: {type(exc).__name__}: {exc}")
        log.warning("vectorize {}: interrupted ({}: {}); job re-queued", workspace_id, type(exc).__name__, exc)
        raise
    except Exception as exc:
        registry.finish(claim.job_id, task_id, JobStatus.FAILED, f"{type(exc).__name__}: {exc}")
        log.exception("vectorize {}: failed", workspace_id)
        raise
    finally:
        lease.release(workspace_lease(workspace_id), holder)
    if not registry.finish(claim.job_id, task_id, result["status"], result.get("error")):
        # cancelled (a downgrade), reaped or taken over meanwhile: its state is not this run's to set
        log.warning("vectorize {}: the job was cancelled, reaped or taken over before it finished", workspace_id)
        return {"status": "lost", "job_id": claim.job_id, "reason": "the job was cancelled, reaped or taken over before it finished"}
    if result["status"] == JobStatus.SUCCESS:
        state.flag(workspace_id, "after vectorization")  # changes made while the job ran: the next tick measures them
    log.info("vectorize {}: {}", workspace_id, result)
    return result


def cannot_run(failure: SourceFailed) -> str:
    """One line: which source cannot run, why, and how to go on without it."""
    plugin = plugin_of(failure.source) or failure.source
    return (
        f"source {failure.source} (plugin {plugin}) cannot run: {describe(failure.error)}. Fix that, or switch the plugin "
        f"off: PI_DISABLE_PLUGINS={plugin}"
    )


class _Vectorization:
    """One run of a job: index every source, validate, store the cursors."""

    def __init__(self, workspace_id: str, job_id: int, task_id: str, fence: Fence, on_progress: Progress | None) -> None:
        self.workspace_id, self.job_id, self.task_id, self.fence = workspace_id, job_id, task_id, fence
        self.jobs, self.leases = current_jobs(), current_leases()
        self.on_progress = on_progress
        self.indexer = Indexer(fence=fence)  # every write carries the lease's token (see pipeline.indexer)
        self.done = 0
        self.total: int | None = None
        self.skipped = 0
        self.totals = IndexStats()

    def report(self) -> None:
        self.jobs.heartbeat(self.job_id, self.task_id, self.done, self.total)
        self.leases.renew(self.fence.name, self.fence.holder)
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)

    def _add(self, stats: IndexStats) -> None:
        for item in fields(IndexStats):
            if item.name == "failed":
                self.totals.failed.update(stats.failed)
            else:
                setattr(self.totals, item.name, getattr(self.totals, item.name) + getattr(stats, item.name))

    def run(self) -> dict[str, Any]:
        workspace_sources: list[Source] = [Guarded(source) for source in sources()]  # type: ignore[misc]
        self.total = sum(sum(1 for _ in source.visible_ids(self.workspace_id)) for source in workspace_sources)
        self.report()
        for source in workspace_sources:
            self.index_source(source)
        missing = self.validate(workspace_sources)
        state.reconciled(self.workspace_id)  # every id was just compared
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
        indexed = Ledger(get_database()).versions(self.workspace_id, source.name)
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
        state.save(source.name, self.workspace_id, changes.cursor())

    def validate(self, workspace_sources: list[Source]) -> set[str]:
        """Every visible document in the ledger and in every sink; leftovers removed; one repair pass."""
        missing: set[str] = set()
        for source in workspace_sources:
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
            self.report()
        return missing

    def not_in_sinks(self, source: Source) -> set[str]:
        """Recorded documents whose first chunk some sink does not have."""
        recorded = Ledger(get_database()).documents_with_chunks(self.workspace_id, source.name)
        absent: set[str] = set()
        for start in range(0, len(recorded), 500):
            batch = recorded[start : start + 500]
            wanted = {chunk_id(document_id, 0): document_id for document_id in batch}
            for sink in self.indexer.sinks:
                present = sink.existing(list(wanted))
                absent |= {document_id for first, document_id in wanted.items() if first not in present}
        return absent
