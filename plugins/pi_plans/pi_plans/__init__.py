"""pi-framework plugin ``pi_plans``: billing-plan driven vectorization (``workspace_plan_sync``).

Also the default ``workspace_plans`` implementation (Plane's ``workspace_licenses``). It is marked
``trylast``, so any other plugin answering ``workspace_plans`` replaces it whatever the load order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import click

from pi_framework.api import TASK_PREFIX, PeriodicJob, Settings, hookimpl
from pi_plans import plane, sync
from pi_plans.settings import PlansSettings

SYNC_TASK = f"{TASK_PREFIX}workspace_plan_sync"


@hookimpl(trylast=True)
def workspace_plans(settings: Settings) -> Iterator[tuple[str, str]] | None:
    return plane.workspace_plans(settings)


@hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    register(sync.workspace_plan_sync, name=SYNC_TASK)


@hookimpl
def register_state_names(register: Callable[[str], None]) -> None:
    register("plans")  # the downgrade markers (sync_states source "plans"), from before plugin:<name> rows


@hookimpl
def register_settings(register: Callable[[type], None]) -> None:
    register(PlansSettings)


@hookimpl
def register_periodic_jobs(
    register: Callable[[PeriodicJob], None], plugin_settings: Callable[[type[PlansSettings]], PlansSettings]
) -> None:
    own = plugin_settings(PlansSettings)
    register(
        PeriodicJob(
            "workspace-plan-sync",
            SYNC_TASK,
            every=own.CELERY_WORKSPACE_PLAN_SYNC_INTERVAL,
            enabled=own.CELERY_WORKSPACE_PLAN_SYNC_ENABLED,
        )
    )


@hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.command("plan-sync")
    @click.option("--dry-run", is_flag=True, help="Print what a pass would do; change nothing.")
    def plan_sync(dry_run: bool) -> None:
        """Run the plan sync here: downgrade and onboarding (what the beat entry does)."""
        if not dry_run:
            click.echo(json.dumps(sync.sync_plans()))
            return
        planned = sync.preview()
        if planned is None:
            click.echo("no plugin answered workspace_plans (PLANE_DATABASE_URL unset?): nothing would change")
            return
        _plans, actions = planned
        for workspace_id, plan in actions.downgrade.items():
            click.echo(f"downgrade {workspace_id} (plan {plan or 'none'})")
        for workspace_id in actions.onboard:
            click.echo(f"onboard   {workspace_id}")
        for workspace_id, error in actions.errors.items():
            click.echo(f"error     {workspace_id}: {error}")
