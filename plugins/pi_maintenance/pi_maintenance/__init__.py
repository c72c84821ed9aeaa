"""pi-framework plugin ``pi_maintenance``: the stuck-job reaper, the ``health_check`` task and ``pi status``."""

from __future__ import annotations

from collections.abc import Callable

import click

from pi_framework.api import TASK_PREFIX, HealthCheck, PeriodicJob, Settings, hookimpl
from pi_maintenance import health, reaper, status

REAPER_TASK = f"{TASK_PREFIX}reap_stuck_vectorization_jobs"
HEALTH_TASK = f"{TASK_PREFIX}health_check"


@hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    register(reaper.reap_stuck_vectorization_jobs, name=REAPER_TASK)
    # a health probe is cheap and says "now": never retried, never redelivered to another worker later
    register(health.health_check, name=HEALTH_TASK, acks_late=False, reject_on_worker_lost=False)


@hookimpl
def register_periodic_jobs(register: Callable[[PeriodicJob], None], settings: Settings) -> None:
    register(PeriodicJob("reap-stuck-vectorization-jobs", REAPER_TASK, every=settings.PI_REAPER_INTERVAL))


@hookimpl
def register_health_checks(register: Callable[[HealthCheck], None]) -> None:
    register(HealthCheck("jobs", health.jobs))


@hookimpl
def register_commands(cli: click.Group) -> None:
    status.register(cli)
