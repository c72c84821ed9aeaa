"""The ``jobs`` health check and the ``pi.celery_app.health_check`` task."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from pi_framework.api import get_registry, job_counts, oldest_active_progress, run_health_checks, silent_jobs, utcnow
from pi_maintenance.jobs import iso


def jobs() -> dict[str, Any]:
    """Job counts by status, and how many active jobs are silent beyond ``PI_HEARTBEAT_TIMEOUT_SECONDS``.

    Silent jobs are information, not a failure: the re-dispatch pass and the reaper deal with them.
    """
    settings = get_registry().settings
    silent_since = utcnow() - timedelta(seconds=settings.PI_HEARTBEAT_TIMEOUT_SECONDS)
    return {
        "by_status": job_counts(),
        "silent_active": silent_jobs(silent_since),
        "oldest_active_progress": iso(oldest_active_progress()),
    }


def health_check() -> dict[str, Any]:
    """Celery task ``pi.celery_app.health_check``: the same report as ``pi health``, as plain JSON types."""
    return json.loads(json.dumps(run_health_checks(get_registry()), default=str))
