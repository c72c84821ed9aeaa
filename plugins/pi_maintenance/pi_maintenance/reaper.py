"""The stuck-job reaper: the last resort for vectorization jobs that stopped making progress.

A job is judged by its last sign of life (heartbeat, else start, else creation), never by its
age, so a long job that still reports progress is never reaped. The update is conditional on
the job still being silent, so a heartbeat that lands between the scan and the update wins.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from loguru import logger
from sqlalchemy import select, update

from pi_framework.db import Database, get_database
from pi_framework.db.models import JobStatus, WorkspaceVectorization, utcnow
from pi_framework.settings import get_settings
from pi_maintenance.jobs import as_utc, last_progress


def reap_stuck_jobs(database: Database, timeout_minutes: int, now: datetime | None = None) -> list[dict[str, Any]]:
    """Mark ``queued``/``running`` jobs silent for more than *timeout_minutes* as ``failed``; return what was reaped."""
    now = now or utcnow()
    cutoff = now - timedelta(minutes=timeout_minutes)
    stuck = (WorkspaceVectorization.status.in_(JobStatus.ACTIVE), last_progress < cutoff)
    reaped: list[dict[str, Any]] = []
    with database.session() as session:
        candidates = session.execute(
            select(WorkspaceVectorization.id, WorkspaceVectorization.workspace_id, WorkspaceVectorization.status, last_progress)
            .where(*stuck)
            .order_by(WorkspaceVectorization.id)
        ).all()
        for job_id, workspace_id, status, since in candidates:
            since = as_utc(since) or now
            error = (
                f"reaped: {status} job made no progress since {since.isoformat()} "
                f"(more than PI_STUCK_JOB_TIMEOUT_MINUTES={timeout_minutes})"
            )
            changed = session.execute(
                update(WorkspaceVectorization)
                .where(WorkspaceVectorization.id == job_id, *stuck)
                .values(status=JobStatus.FAILED, error=error, finished_at=now)
            ).rowcount
            if changed:
                reaped.append({"job_id": job_id, "workspace_id": workspace_id, "status": status, "since": since.isoformat()})
                logger.bind(workspace=workspace_id, job=job_id).warning(
                    "reaper: job {} of workspace {}: {}", job_id, workspace_id, error
                )
    return reaped


def reap_stuck_vectorization_jobs() -> dict[str, int]:
    """Celery task ``pi.celery_app.reap_stuck_vectorization_jobs``."""
    timeout = get_settings().PI_STUCK_JOB_TIMEOUT_MINUTES
    reaped = reap_stuck_jobs(get_database(), timeout)
    logger.info("reaper: {} stuck job(s) failed (timeout {} min)", len(reaped), timeout)
    return {"reaped": len(reaped)}
