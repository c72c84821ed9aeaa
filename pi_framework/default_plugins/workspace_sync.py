"""Built-in plugin ``workspace_sync``: the Celery tasks, beat entries, commands and health check that drive
:mod:`pi_framework.sync` for every ``scope="workspace"`` source.

* ``vectorize_workspace(workspace_id, job_id)``: one run of a vectorization job (also the bulk re-feed);
* ``trigger_live_sync`` (beat ``trigger-live-sync``): the tick that sends each workspace with pending work
  to exactly one path, a live sync or a bulk re-feed;
* ``process_workspace_live_sync(workspace_id)``: applies the changes since the cursors, retried with
  backoff per ``CELERY_VECTOR_SYNC_*`` on failure (a sink outage included: the cursors stay);
* ``redispatch_lost_jobs`` (beat ``redispatch-lost-jobs``): work survives the broker — re-sends lost jobs
  and retries failed ones with backoff.
"""

from __future__ import annotations

import json
from typing import Any

import click
from loguru import logger

from pi_framework import hookimpl, runtime
from pi_framework.changefeed.plugin import changefeed_commands  # noqa: F401 - hooks of this plugin (and the feed's thread)
from pi_framework.contract.contributions import HealthCheck, PeriodicJob
from pi_framework.db.models import JobStatus
from pi_framework.sync import current_jobs, state
from pi_framework.sync.dispatch import LIVE_SYNC_TASK, VECTORIZE_TASK
from pi_framework.sync.live import live_sync
from pi_framework.sync.trigger import stuck_workspaces, trigger
from pi_framework.sync.vectorize import Progress, request_vectorization, vectorize


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
    counts = current_jobs().redispatch_lost()
    if any(counts.values()):
        logger.info("redispatch: {}", counts)
    return counts


def check_pending_work() -> dict[str, Any]:
    """Health check ``pending_work``: no workspace has had pending work for longer than ``PI_PENDING_ALERT_SECONDS``."""
    limit = runtime.get_registry().settings.PI_PENDING_ALERT_SECONDS
    stuck = stuck_workspaces(limit)
    if stuck:
        raise RuntimeError(
            f"{len(stuck)} workspace(s) with pending work older than {limit}s: "
            + "; ".join(f"{row['workspace_id']} since {row['pending_since']}: {row['why']}" for row in stuck[:5])
        )
    return {"pending_workspaces": len(state.all_of(state.PENDING)), "older_than_seconds": limit}


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
            if result["status"] == JobStatus.FAILED:  # one line: what failed and how to go on (no traceback)
                raise click.ClickException(f"vectorize {workspace_id}: {result.get('error')}")
            click.echo(json.dumps(result, indent=2, default=str))
        else:
            click.echo(f"job {request_vectorization(workspace_id)} queued for workspace {workspace_id}")

    @cli.command("sync")
    @click.argument("workspace_id")
    @click.option("--reconcile", is_flag=True, help="Also compare every id with the index.")
    def sync_command(workspace_id: str, reconcile: bool) -> None:
        """Apply a workspace's pending changes here (what a live-sync tick does)."""
        click.echo(json.dumps(live_sync(workspace_id, force_reconcile=reconcile), indent=2, default=str))
