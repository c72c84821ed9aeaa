"""Sending tasks from the sync machinery (through whichever Celery app is current)."""

from __future__ import annotations

from typing import Any

VECTORIZE_TASK = "pi.celery_app.vectorize_workspace"
LIVE_SYNC_TASK = "pi.celery_app.process_workspace_live_sync"


def send_task(name: str, **kwargs: Any) -> None:
    """Send through the current app (a test or the demo may have built its own with :func:`create_app`)."""
    from celery import current_app

    import pi_framework.celery_app  # noqa: F401 - builds the app, and makes it current, on first use

    current_app.send_task(name, kwargs=kwargs)
