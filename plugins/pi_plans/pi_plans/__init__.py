"""pi-framework plugin ``pi_plans``: billing-plan driven vectorization (``workspace_plan_sync``).

Also the default ``workspace_plans`` implementation (Plane's ``workspace_licenses``). It is marked
``trylast``, so any other plugin answering ``workspace_plans`` replaces it whatever the load order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pi_framework import hookimpl
from pi_framework.contributions import TASK_PREFIX, PeriodicJob
from pi_framework.settings import Settings
from pi_plans import plane, sync

SYNC_TASK = f"{TASK_PREFIX}workspace_plan_sync"


@hookimpl(trylast=True)
def workspace_plans(settings: Settings) -> Iterator[tuple[str, str]] | None:
    return plane.workspace_plans(settings)


@hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    register(sync.workspace_plan_sync, name=SYNC_TASK)


@hookimpl
def register_periodic_jobs(register: Callable[[PeriodicJob], None], settings: Settings) -> None:
    register(
        PeriodicJob(
            "workspace-plan-sync",
            SYNC_TASK,
            every=settings.CELERY_WORKSPACE_PLAN_SYNC_INTERVAL,
            enabled=settings.CELERY_WORKSPACE_PLAN_SYNC_ENABLED,
        )
    )
