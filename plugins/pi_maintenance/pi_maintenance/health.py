"""The ``jobs`` health check and the ``pi.celery_app.health_check`` task."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from pi_framework.api import JobStatus, WorkspaceVectorization, get_database, get_registry, run_health_checks, utcnow
from pi_maintenance.jobs import counts_by_status, iso, last_progress


def jobs() -> dict[str, Any]:
    """Job counts by status, and how many active jobs are silent beyond ``PI_HEARTBEAT_TIMEOUT_SECONDS``.

    Silent jobs are information, not a failure: the re-dispatch pass and the reaper deal with them.
    """
    settings = get_registry().settings
    silent_since = utcnow() - timedelta(seconds=settings.PI_HEARTBEAT_TIMEOUT_SECONDS)
    active = WorkspaceVectorization.status.in_(JobStatus.ACTIVE)
    with get_database().session() as session:
        by_status = counts_by_status(session)
        silent = session.scalar(
            select(func.count()).select_from(WorkspaceVectorization).where(active, last_progress < silent_since)
        )
        oldest = session.scalar(select(func.min(last_progress)).where(active))
    return {"by_status": by_status, "silent_active": silent, "oldest_active_progress": iso(oldest)}


def health_check() -> dict[str, Any]:
    """Celery task ``pi.celery_app.health_check``: the same report as ``pi health``, as plain JSON types."""
    return json.loads(json.dumps(run_health_checks(get_registry()), default=str))
