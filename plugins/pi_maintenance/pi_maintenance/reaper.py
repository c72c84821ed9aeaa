"""The stuck-job reaper: the last resort for vectorization jobs that stopped making progress.

The transition itself belongs to the jobs (:meth:`pi_framework.sync.jobs.Jobs.reap`): a reaped job
is ``failed`` with its reason, frees its concurrency slot, and is retried with backoff like any
failed job, so a workspace is never left without live sync and without a retry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from loguru import logger

from pi_framework.api import Database, Jobs, get_database, get_settings


def reap_stuck_jobs(database: Database, timeout_minutes: int, now: datetime | None = None) -> list[dict[str, Any]]:
    """Mark ``queued``/``running`` jobs silent for more than *timeout_minutes* as ``failed``; return what was reaped."""
    return Jobs(database, database.settings).reap(timeout_minutes, now)


def reap_stuck_vectorization_jobs() -> dict[str, int]:
    """Celery task ``pi.celery_app.reap_stuck_vectorization_jobs``."""
    timeout = get_settings().PI_STUCK_JOB_TIMEOUT_MINUTES
    reaped = reap_stuck_jobs(get_database(), timeout)
    logger.info("reaper: {} stuck job(s) failed (timeout {} min)", len(reaped), timeout)
    return {"reaped": len(reaped)}
