"""The Celery app. Tasks and beat entries come from the plugins, never from a list in this file.

``celery -A pi_framework.celery_app worker -B`` finds ``celery_app`` here.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from celery import Celery, signals
from loguru import logger

from pi_framework import broker, runtime
from pi_framework.db import reset_database
from pi_framework.log import configure_logging
from pi_framework.plugins import PluginConflictError, Registry
from pi_framework.settings import Settings, SettingsError, get_settings

#: applied to every plugin task unless it says otherwise
TASK_DEFAULTS: dict[str, Any] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "retry_backoff": True,
    "retry_backoff_max": 600,
    "retry_jitter": True,
}


#: a beat tick nobody consumed is dropped after one interval, but never sooner than this (polling brokers are slow)
MIN_TICK_EXPIRES = 10.0


def _beat_schedule(registry: Registry) -> dict[str, dict[str, Any]]:
    schedule: dict[str, dict[str, Any]] = {}
    for job in registry.enabled_periodic_jobs():
        if job.task not in registry.tasks:
            raise PluginConflictError(
                f"beat entry {job.name!r} (plugin {registry.owner[('periodic job', job.name)]!r}) "
                f"names task {job.task!r}, which no loaded plugin provides"
            )
        schedule[job.name] = {
            "task": job.task,
            "schedule": job.every,
            "args": tuple(job.args),
            "kwargs": dict(job.kwargs),
            "options": {"expires": job.expires or max(job.every, MIN_TICK_EXPIRES)},
        }
    return schedule


def create_app(settings: Settings | None = None) -> Celery:
    """Build the app from *settings* and the loaded plugins."""
    settings = settings or get_settings()
    configure_logging(settings)
    registry = runtime.get_registry(settings)
    app = Celery("pi_framework", set_as_current=True)
    app.conf.update(
        broker_url=broker.embedded_url(settings.broker_url) if settings.broker_is_embedded else settings.broker_url,
        result_backend=settings.CELERY_RESULT_BACKEND,
        task_ignore_result=settings.CELERY_RESULT_BACKEND is None,
        task_default_queue=settings.CELERY_DEFAULT_QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=2 * 3600,
        task_time_limit=3 * 3600,
        task_track_started=True,
        timezone="UTC",
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule=_beat_schedule(registry),
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
        worker_send_task_events=settings.PI_TASK_EVENTS,  # celery events / Flower (chat text redacted: pi_framework.events)
        task_send_sent_event=settings.PI_TASK_EVENTS,
    )
    if settings.broker_is_embedded:  # acked messages deleted, unacked ones delivered again after the timeout
        app.conf.broker_transport_options = {"visibility_timeout": settings.PI_EMBEDDED_BROKER_VISIBILITY_TIMEOUT}
        logger.info(
            "CELERY_BROKER_URL is unset: using the embedded SQLite broker at {} (visibility timeout {} s)",
            settings.broker_url,
            settings.PI_EMBEDDED_BROKER_VISIBILITY_TIMEOUT,
        )
    for spec in registry.tasks.values():
        app.task(name=spec.name, **{**TASK_DEFAULTS, **spec.options})(spec.func)
    return app


# ---------------------------------------------------------------------- worker life cycle
@signals.worker_process_init.connect
def _process_init(**_: Any) -> None:
    reset_database()
    runtime.get_registry().call_each("worker_start", settings=runtime.get_registry().settings)


@signals.worker_process_shutdown.connect
def _process_shutdown(**_: Any) -> None:
    runtime.get_registry().call_each("worker_stop", settings=runtime.get_registry().settings)
    reset_database()


# ---------------------------------------------------------------------- one structured line per task
_started: dict[str, float] = {}


def _workspace_of(args: Any, kwargs: Any) -> str | None:
    """The workspace a task works on: its ``workspace_id`` keyword, else a first positional string."""
    if kwargs and "workspace_id" in kwargs:
        return kwargs["workspace_id"]
    if args and isinstance(args[0], str):
        return args[0]
    return None


@signals.task_prerun.connect
def _task_start(task_id: str, task: Any, args: Any = None, kwargs: Any = None, **_: Any) -> None:
    _started[task_id] = time.monotonic()
    logger.bind(task=task.name, workspace=_workspace_of(args, kwargs)).info(
        "task start {} workspace={}", task.name, _workspace_of(args, kwargs)
    )


@signals.task_postrun.connect
def _task_finish(
    task_id: str, task: Any, args: Any = None, kwargs: Any = None, retval: Any = None, state: str | None = None, **_: Any
) -> None:
    duration = time.monotonic() - _started.pop(task_id, time.monotonic())
    counts = retval if isinstance(retval, dict) else {}
    logger.bind(task=task.name, workspace=_workspace_of(args, kwargs), duration=round(duration, 3), state=state, **counts).info(
        "task finish {} workspace={} state={} duration={:.3f}s counts={}",
        task.name,
        _workspace_of(args, kwargs),
        state,
        duration,
        counts,
    )


try:
    celery_app = create_app()
except SettingsError as _error:  # one line naming the variable, not a traceback
    sys.exit(f"pi-framework: {_error}")
app = celery_app
