"""Vectorization jobs: the PI database, not the broker, says what work exists.

Every transition of a job — request, dispatch, claim, heartbeat, finish, re-queue, retry of a failed
job, cancel (downgrade), reap — is a method here, and each is a compare-and-set: one ``UPDATE … WHERE id = …
AND status IN (<the statuses it leaves>) [AND task_id = <this task>]`` (atomic on PostgreSQL and SQLite
alike), which reports whether it happened. Two tasks racing for the same job cannot both win, a task whose
job was taken over (silent longer than ``PI_HEARTBEAT_TIMEOUT_SECONDS``) notices at its next heartbeat, and
a cancel always wins: ``cancelled`` is terminal (an upgrade queues a *new* job, :meth:`Jobs.request`), so a
finish, re-queue, heartbeat, claim or dispatch that comes after it changes nothing — no status, no live sync.

=============  ===========================================  ===========  ==========================
transition     from                                         to           reports
=============  ===========================================  ===========  ==========================
dispatch       queued, not sent                             (sent)       how many were sent
claim          queued; running if silent or this task's     running      :class:`Claim`
heartbeat      running under this task                      running      raises :class:`JobLost`
finish         running under this task                      success or   ``bool``
                                                            failed
requeue        running under this task                      queued       ``bool``
redispatch     running and silent                           queued       counts
cancel         queued, running                              cancelled    how many were cancelled
reap           queued, running, without progress            failed       the reaped jobs
=============  ===========================================  ===========  ==========================

Two times describe a job: ``alive_at`` (column ``alive_at``), the last sign of life of its task
(sent, claimed, reporting), which decides re-dispatch; and ``progress_at`` (column ``progress_at``),
the last time it got further, which the stuck-job reaper judges.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from loguru import logger
from sqlalchemy import Select, and_, case, delete, func, or_, select, update

from pi_framework import metrics
from pi_framework.batching import chunked
from pi_framework.db import Database
from pi_framework.db.models import JobStatus, SyncState, WorkspaceVectorization, utcnow
from pi_framework.settings import Settings
from pi_framework.sync.dispatch import VECTORIZE_TASK, send_task
from pi_framework.sync.state import RECONCILE

Job = WorkspaceVectorization
#: the longest wait before a failed job is tried again (the wait doubles with each consecutive failure)
_MAX_RETRY_DELAY = timedelta(hours=6)


class JobLost(RuntimeError):
    """This task no longer runs its job (another task took it over, or it was cancelled or reaped): stop without
    touching the workspace."""


#: what :meth:`Jobs.finish` may end a run with
_OUTCOMES = (JobStatus.SUCCESS, JobStatus.FAILED)


def as_utc(moment: datetime | None) -> datetime | None:
    """Aware UTC (SQLite hands back naive datetimes)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass
class Claim:
    job_id: int | None
    claimed: bool
    reason: str = ""


class Jobs:
    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings

    @property
    def stale_before(self) -> datetime:
        return utcnow() - timedelta(seconds=self.settings.PI_HEARTBEAT_TIMEOUT_SECONDS)

    def _alive(self) -> Any:
        """Running jobs that still show signs of life (they count against the concurrency cap)."""
        return and_(Job.status == JobStatus.RUNNING, Job.alive_at >= self.stale_before)

    def active(self, workspace_id: str) -> Job | None:
        with self.database.session() as session:
            return session.scalars(
                select(Job).where(Job.workspace_id == workspace_id, Job.status.in_(JobStatus.ACTIVE)).order_by(Job.id.desc())
            ).first()

    def latest(self, workspace_id: str) -> Job | None:
        with self.database.session() as session:
            return session.scalars(select(Job).where(Job.workspace_id == workspace_id).order_by(Job.id.desc())).first()

    def get(self, job_id: int) -> Job | None:
        with self.database.session() as session:
            return session.get(Job, job_id)

    # ------------------------------------------------------------------ queueing and dispatch
    def request(self, workspace_id: str, dispatch: bool = True) -> int:
        """A queued job for *workspace_id* (the active one if there is one), dispatched when a slot is free.

        ``dispatch=False`` only queues it: a caller queueing many jobs calls :meth:`dispatch_queued` once.
        """
        job = self.active(workspace_id)
        if job is None:
            job = self._create(workspace_id, dispatched=False)
            logger.bind(workspace=workspace_id, job=job.id).info(
                "vectorization job {} queued for workspace {}", job.id, workspace_id
            )
        if dispatch:
            self.dispatch_queued()
        return job.id

    def _create(self, workspace_id: str, dispatched: bool = True) -> Job:
        """A new active job; if a concurrent caller created one too, both settle on the older one.

        ``dispatched`` says a task for it already runs (a direct dispatch without a job).
        """
        with self.database.session() as session:
            mine = Job(
                workspace_id=workspace_id,
                status=JobStatus.QUEUED,
                created_at=utcnow(),
                alive_at=utcnow() if dispatched else None,
            )
            session.add(mine)
        with self.database.session() as session:
            oldest = session.scalars(
                select(Job).where(Job.workspace_id == workspace_id, Job.status.in_(JobStatus.ACTIVE)).order_by(Job.id)
            ).first()
            if oldest is not None and oldest.id != mine.id:
                session.execute(delete(Job).where(Job.id == mine.id, Job.status == JobStatus.QUEUED))
                return oldest
        return mine

    def free_slots(self) -> int:
        with self.database.session() as session:
            running = session.scalar(select(func.count()).select_from(Job).where(self._alive())) or 0
        return max(0, self.settings.PI_MAX_CONCURRENT_VECTORIZATIONS - running)

    def dispatch_queued(self) -> int:
        """Send the task of the oldest undispatched queued jobs, as many as the concurrency cap allows."""
        slots = self.free_slots()
        if not slots:
            return 0
        sent = 0
        with self.database.session() as session:
            candidates = session.execute(
                select(Job.id, Job.workspace_id)
                .where(Job.status == JobStatus.QUEUED, Job.alive_at.is_(None))
                .order_by(Job.created_at, Job.id)
                .limit(slots)
            ).all()
        for job_id, workspace_id in candidates:
            with self.database.session() as session:
                won = session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == JobStatus.QUEUED, Job.alive_at.is_(None))
                    .values(alive_at=utcnow())
                ).rowcount
            if won:
                send_task(VECTORIZE_TASK, workspace_id=workspace_id, job_id=job_id)
                sent += 1
        return sent

    def redispatch_lost(self) -> dict[str, int]:
        """Re-queue running jobs whose heartbeat stopped and re-send queued jobs nobody picked up.

        A running job's task shows it is alive through ``alive_at`` (claim and every report);
        ``progress_at`` is left alone: it is the last *progress*, which the stuck-job reaper judges,
        so a job that keeps dying without getting further is reaped in the end.
        """
        stale = self.stale_before
        now = utcnow()
        with self.database.session() as session:
            silent = session.execute(
                select(Job.id, Job.workspace_id, Job.alive_at).where(
                    Job.status == JobStatus.RUNNING, or_(Job.alive_at < stale, Job.alive_at.is_(None))
                )
            ).all()
            requeued = 0
            for job_id, workspace_id, heartbeat in silent:
                requeued += session.execute(
                    update(Job)
                    .where(
                        Job.id == job_id,
                        Job.status == JobStatus.RUNNING,
                        or_(Job.alive_at < stale, Job.alive_at.is_(None)),
                    )
                    .values(
                        status=JobStatus.QUEUED,
                        task_id=None,
                        alive_at=None,
                        error=f"re-queued at {now.isoformat()}: no heartbeat since {heartbeat}",
                    )
                ).rowcount
                logger.bind(workspace=workspace_id, job=job_id).warning(
                    "vectorization job {} of workspace {} silent since {}: re-queued, resumes from the ledger",
                    job_id,
                    workspace_id,
                    heartbeat,
                )
            resent = session.execute(
                update(Job).where(Job.status == JobStatus.QUEUED, Job.alive_at < stale).values(alive_at=None)
            ).rowcount
        retried = self.retry_failed()
        counts = {"requeued": requeued, "resent": resent, "retried": retried, "dispatched": self.dispatch_queued()}
        metrics.jobs_redispatched(counts)
        return counts

    # ------------------------------------------------------------------ a task's side
    def claim(self, workspace_id: str, task_id: str, job_id: int | None = None) -> Claim:
        """Make this task the runner of job *job_id* (default: the workspace's active job, created if there is none).

        Refused when the job is over (a late duplicate message), when another task runs it with a fresh
        heartbeat (duplicate dispatch) or when ``PI_MAX_CONCURRENT_VECTORIZATIONS`` jobs are running
        (the job stays queued and is dispatched when a slot frees).
        """
        job = self.get(job_id) if job_id is not None else self.active(workspace_id) or self._create(workspace_id)
        if job is None or job.workspace_id != workspace_id or job.status not in JobStatus.ACTIVE:
            state = "unknown" if job is None else job.status if job.workspace_id == workspace_id else "of another workspace"
            return Claim(job_id, False, f"job {job_id} is {state}: nothing to do")
        stale, now = self.stale_before, utcnow()
        takeover = or_(Job.status == JobStatus.QUEUED, Job.task_id == task_id, Job.alive_at < stale, Job.alive_at.is_(None))
        if job.status == JobStatus.RUNNING and job.task_id != task_id and (as_utc(job.alive_at) or now) >= stale:
            return Claim(job.id, False, f"job {job.id} is already running (task {job.task_id})")
        if job.status == JobStatus.QUEUED and not self.free_slots():
            with self.database.session() as session:
                session.execute(update(Job).where(Job.id == job.id, Job.status == JobStatus.QUEUED).values(alive_at=None))
            return Claim(job.id, False, f"deferred: {self.settings.PI_MAX_CONCURRENT_VECTORIZATIONS} vectorizations running")
        with self.database.session() as session:
            won = session.execute(
                update(Job)
                .where(Job.id == job.id, Job.status.in_(JobStatus.ACTIVE), takeover)
                .values(
                    status=JobStatus.RUNNING,
                    task_id=task_id,
                    alive_at=now,
                    attempts=Job.attempts + 1,
                    started_at=func.coalesce(Job.started_at, now),
                    error=None,
                )
            ).rowcount
        if won:
            return Claim(job.id, True)
        current = self.get(job.id)
        if current is not None and current.status not in JobStatus.ACTIVE:  # cancelled or reaped meanwhile
            return Claim(job.id, False, f"job {job.id} is {current.status}: nothing to do")
        return Claim(job.id, False, f"job {job.id} was claimed by another task")

    def heartbeat(self, job_id: int, task_id: str, done: int, total: int | None) -> None:
        """Report progress; raises :class:`JobLost` when this task no longer runs the job (taken over, cancelled, reaped)."""
        now = utcnow()
        with self.database.session() as session:
            changed = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.task_id == task_id, Job.status == JobStatus.RUNNING)
                .values(
                    progress_total=total,
                    alive_at=now,
                    # progress is going further than any attempt went: a resumed job re-skipping
                    # what is indexed shows the furthest point and does not count as progress
                    progress_done=case((Job.progress_done < done, done), else_=Job.progress_done),
                    progress_at=case((Job.progress_done < done, now), else_=func.coalesce(Job.progress_at, now)),
                )
            ).rowcount
        if not changed:
            raise JobLost(f"job {job_id} is no longer run by task {task_id}: {self._whereabouts(self.get(job_id))}")

    def finish(self, job_id: int, task_id: str, status: str, error: str | None = None) -> bool:
        """End this task's run; ``True`` if it did, ``False`` if the run was no longer this task's to end.

        ``success`` switches live sync on; ``failed`` is retried later (:meth:`retry_failed`). Only a job still
        ``running`` under *task_id* is ended: one cancelled meanwhile (a downgrade after the last heartbeat) stays
        cancelled with live sync off, one reaped stays failed, one taken over stays the other task's. The caller
        then treats the run as lost (no more writes for the workspace).
        """
        if status not in _OUTCOMES:
            raise ValueError(f"a run ends as success or failed, not {status!r}")
        with self.database.session() as session:
            ended = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.task_id == task_id, Job.status == JobStatus.RUNNING)
                .values(status=status, error=error, finished_at=utcnow(), live_sync_enabled=status == JobStatus.SUCCESS)
            ).rowcount
        if not ended:
            self._lost(job_id, task_id, f"not ended as {status}")
        self.dispatch_queued()
        return bool(ended)

    def requeue(self, job_id: int, task_id: str, reason: str, at_once: bool = False) -> bool:
        """Give the job back to the queue (it resumes from the ledger); ``True`` if it did.

        ``at_once``: send it again now (a run that checkpointed before its time limit); otherwise the
        re-dispatch pass sends it after ``PI_HEARTBEAT_TIMEOUT_SECONDS`` (a transient outage: backoff).
        ``False``: the job was no longer ``running`` under *task_id* (cancelled, reaped or taken over) and is
        left as it is, so a cancelled job is never sent again.
        """
        with self.database.session() as session:
            queued = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.task_id == task_id, Job.status == JobStatus.RUNNING)
                .values(status=JobStatus.QUEUED, task_id=None, error=reason, alive_at=None if at_once else utcnow())
            ).rowcount
        if not queued:
            self._lost(job_id, task_id, "not re-queued")
        self.dispatch_queued()
        return bool(queued)

    @staticmethod
    def _whereabouts(job: Job | None) -> str:
        """Where a job a task lost stands now (for the log and :class:`JobLost`)."""
        if job is None:
            return "it no longer exists"
        if job.status == JobStatus.RUNNING:
            return f"it is running under task {job.task_id}"
        return f"it is {job.status}" + (f" ({job.error})" if job.error else "")

    def _lost(self, job_id: int, task_id: str, what: str) -> None:
        job = self.get(job_id)
        logger.bind(workspace=job.workspace_id if job else None, job=job_id).warning(
            "vectorization job {}: task {} no longer runs it: {}; {}", job_id, task_id, what, self._whereabouts(job)
        )

    def cancel(self, workspace_id: str, reason: str) -> int:
        """Cancel the workspace's active jobs (a downgrade): a running task stops at its next heartbeat; never retried."""
        with self.database.session() as session:
            return session.execute(
                update(Job)
                .where(Job.workspace_id == workspace_id, Job.status.in_(JobStatus.ACTIVE))
                .values(status=JobStatus.CANCELLED, error=reason, finished_at=utcnow(), live_sync_enabled=False)
            ).rowcount

    def reap(self, timeout_minutes: int, now: datetime | None = None) -> list[dict[str, Any]]:
        """Fail active jobs that made no progress for *timeout* (the last resort); they are retried like any failure.

        A job is judged by its last progress (else start, else creation), never by its age, so a long job that
        still reports progress is never reaped; the update is conditional on the job still being silent.
        """
        now = now or utcnow()
        last_progress = func.coalesce(Job.progress_at, Job.started_at, Job.created_at)
        stuck = (Job.status.in_(JobStatus.ACTIVE), last_progress < now - timedelta(minutes=timeout_minutes))
        reaped: list[dict[str, Any]] = []
        with self.database.session() as session:
            candidates = session.execute(
                select(Job.id, Job.workspace_id, Job.status, last_progress).where(*stuck).order_by(Job.id)
            ).all()
            for job_id, workspace_id, status, since in candidates:
                since = as_utc(since) or now
                error = (
                    f"reaped: {status} job made no progress since {since.isoformat()} "
                    f"(more than PI_STUCK_JOB_TIMEOUT_MINUTES={timeout_minutes})"
                )
                changed = session.execute(
                    update(Job).where(Job.id == job_id, *stuck).values(status=JobStatus.FAILED, error=error, finished_at=now)
                ).rowcount
                if changed:
                    reaped.append({"job_id": job_id, "workspace_id": workspace_id, "status": status, "since": since.isoformat()})
                    logger.bind(workspace=workspace_id, job=job_id).warning(
                        "reaper: job {} of workspace {}: {}", job_id, workspace_id, error
                    )
        metrics.jobs_reaped(len(reaped))
        return reaped

    def retry_failed(self) -> int:
        """Queue a new job for every workspace whose latest job failed, once its backoff has passed.

        The wait is ``PI_JOB_RETRY_DELAY`` doubled for each consecutive failure (at most 6 h); the failed job
        keeps its reason. Cancelled jobs (downgrades) are never retried. A failed job therefore never leaves
        a workspace without live sync *and* without a retry.
        """
        latest = select(func.max(Job.id)).group_by(Job.workspace_id)
        with self.database.session() as session:
            failed = session.execute(
                select(Job.workspace_id, Job.finished_at).where(Job.id.in_(latest), Job.status == JobStatus.FAILED)
            ).all()
        now, retried = utcnow(), 0
        for workspace_id, finished_at in failed:
            with self.database.session() as session:
                statuses = session.scalars(
                    select(Job.status).where(Job.workspace_id == workspace_id).order_by(Job.id.desc()).limit(12)
                ).all()
            streak = next((n for n, status in enumerate(statuses) if status != JobStatus.FAILED), len(statuses))
            delay = min(timedelta(seconds=self.settings.PI_JOB_RETRY_DELAY) * 2 ** max(streak - 1, 0), _MAX_RETRY_DELAY)
            if (as_utc(finished_at) or now) + delay > now:
                continue
            job_id = self.request(workspace_id, dispatch=False)
            retried += 1
            logger.bind(workspace=workspace_id, job=job_id).warning(
                "workspace {}: {} failed job(s) in a row: job {} queued to retry", workspace_id, streak, job_id
            )
        return retried

    def disable_live_sync(self, workspace_id: str) -> None:
        with self.database.session() as session:
            session.execute(
                update(Job)
                .where(Job.workspace_id == workspace_id, Job.live_sync_enabled.is_(True))
                .values(live_sync_enabled=False)
            )

    def live_synced(self, workspace_id: str) -> None:
        with self.database.session() as session:
            latest = select(func.max(Job.id)).where(Job.workspace_id == workspace_id).scalar_subquery()
            session.execute(update(Job).where(Job.id == latest).values(last_live_sync_at=utcnow()))

    def _live(self, among: Sequence[str] | None = None) -> Select:
        """Workspace ids whose latest job succeeded with live sync enabled (optionally only *among* these)."""
        latest = select(Job.workspace_id, func.max(Job.id).label("id")).group_by(Job.workspace_id)
        if among is not None:
            latest = latest.where(Job.workspace_id.in_(among))
        latest = latest.subquery()
        return (
            select(Job.workspace_id)
            .join(latest, latest.c.id == Job.id)
            .where(Job.status == JobStatus.SUCCESS, Job.live_sync_enabled.is_(True))
        )

    def live_sync_workspaces(self, among: Iterable[str] | None = None) -> list[str]:
        """Workspaces (all, or those *among* the given ids) whose latest job succeeded with live sync enabled.

        A workspace whose latest job is queued or running (a vectorization or bulk re-feed) is not
        live-synced: the job owns it until it succeeds.
        """
        with self.database.session() as session:
            if among is None:
                return list(session.scalars(self._live().order_by(Job.workspace_id)))
            return sorted(
                workspace_id for batch in chunked(sorted(set(among)), 500) for workspace_id in session.scalars(self._live(batch))
            )

    def live_sync_enabled(self, workspace_id: str) -> bool:
        return bool(self.live_sync_workspaces([workspace_id]))

    def reconcile_due(self, interval: int) -> list[str]:
        """Live-synced workspaces whose last id reconcile (``sync_states`` row ``reconcile``, stamped by every
        vectorization and reconcile) is older than *interval* seconds: the stale stamps first (one range of
        ``sync_states``), then which of those are live — never a pass over every workspace's jobs."""
        with self.database.session() as session:
            stale = list(
                session.scalars(
                    select(SyncState.scope).where(
                        SyncState.source == RECONCILE, SyncState.updated_at < utcnow() - timedelta(seconds=interval)
                    )
                )
            )
        return self.live_sync_workspaces(among=stale) if stale else []
