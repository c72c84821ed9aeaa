"""What operators and plugins read of the vectorization jobs (``pi status``, the ``jobs`` health check, a billing
plugin's plan sync): plain values, never the table's rows. The transitions stay in :mod:`pi_framework.sync.jobs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case, func, select

from pi_framework.db import Database, get_database
from pi_framework.db.models import JobStatus, WorkspaceVectorization
from pi_framework.sync.jobs import as_utc

Job = WorkspaceVectorization
#: when a job last showed a sign of life: its progress, else its start, else its creation (what the reaper judges)
_LAST_PROGRESS = func.coalesce(Job.progress_at, Job.started_at, Job.created_at)


@dataclass(frozen=True)
class JobView:
    """One vectorization job as it stands."""

    id: int
    workspace_id: str
    status: str
    progress_done: int
    progress_total: int | None
    attempts: int
    live_sync_enabled: bool
    error: str | None
    #: its progress, else its start, else its creation
    last_progress_at: datetime | None


@dataclass(frozen=True)
class WorkspaceJobs:
    """The jobs of one workspace: its latest, and what all of them say together."""

    workspace_id: str
    latest: JobView
    #: how many of its jobs have each status
    by_status: dict[str, int] = field(default_factory=dict)
    #: any of its jobs has live sync on
    live_sync_enabled: bool = False
    #: any of its jobs is queued or running
    active: bool = False
    last_live_sync_at: datetime | None = None


def job_counts(database: Database | None = None) -> dict[str, int]:
    """How many jobs have each status (every workspace)."""
    with (database or get_database()).session() as session:
        return dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())


def workspace_jobs(workspace_id: str | None = None, database: Database | None = None) -> list[WorkspaceJobs]:
    """The jobs of every workspace that has one (or of *workspace_id* only), by workspace id."""
    scope = [Job.workspace_id == workspace_id] if workspace_id is not None else []
    by_status: dict[str, dict[str, int]] = {}
    with (database or get_database()).session() as session:
        for ws, status, count in session.execute(
            select(Job.workspace_id, Job.status, func.count()).where(*scope).group_by(Job.workspace_id, Job.status)
        ):
            by_status.setdefault(ws, {})[status] = count
        flags = {
            ws: (bool(live), bool(active), as_utc(last_live))
            for ws, live, active, last_live in session.execute(
                select(
                    Job.workspace_id,
                    func.max(case((Job.live_sync_enabled.is_(True), 1), else_=0)),
                    func.max(case((Job.status.in_(JobStatus.ACTIVE), 1), else_=0)),
                    func.max(Job.last_live_sync_at),
                )
                .where(*scope)
                .group_by(Job.workspace_id)
            )
        }
        latest = select(func.max(Job.id)).where(*scope).group_by(Job.workspace_id)
        rows = session.execute(select(Job, _LAST_PROGRESS).where(Job.id.in_(latest)).order_by(Job.workspace_id))
        return [
            WorkspaceJobs(
                job.workspace_id,
                JobView(
                    job.id,
                    job.workspace_id,
                    job.status,
                    job.progress_done,
                    job.progress_total,
                    job.attempts,
                    job.live_sync_enabled,
                    job.error,
                    as_utc(progress_at),
                ),
                by_status.get(job.workspace_id, {}),
                *flags[job.workspace_id],
            )
            for job, progress_at in rows
        ]


def silent_jobs(since: datetime, database: Database | None = None) -> int:
    """How many queued or running jobs made no progress since *since*."""
    with (database or get_database()).session() as session:
        query = select(func.count()).select_from(Job).where(Job.status.in_(JobStatus.ACTIVE), _LAST_PROGRESS < since)
        return session.scalar(query) or 0


def oldest_active_progress(database: Database | None = None) -> datetime | None:
    """The earliest last progress of a queued or running job (``None``: no such job)."""
    with (database or get_database()).session() as session:
        return as_utc(session.scalar(select(func.min(_LAST_PROGRESS)).where(Job.status.in_(JobStatus.ACTIVE))))
