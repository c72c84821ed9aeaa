"""pi-framework plugin ``pi_docs``: documentation from GitHub (or local git) repositories, indexed as global content.

Contributes the task ``pi.celery_app.sync_docs_periodic_task``, its beat entry ``sync-docs-periodic``,
the command ``pi feed-docs`` and the health check ``docs``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pi_docs.settings import DocsSettings
from pi_framework.api import HealthCheck, PeriodicJob, hookimpl

if TYPE_CHECKING:
    import click

TASK_NAME = "pi.celery_app.sync_docs_periodic_task"
JOB_NAME = "sync-docs-periodic"


@hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    from pi_docs.tasks import sync_docs_periodic_task

    register(sync_docs_periodic_task, name=TASK_NAME)


@hookimpl
def register_state_names(register: Callable[[str], None]) -> None:
    register("docs")  # the repositories' commit SHAs and ETags (sync_states source "docs")


@hookimpl
def register_settings(register: Callable[[type], None]) -> None:
    register(DocsSettings)


@hookimpl
def register_periodic_jobs(
    register: Callable[[PeriodicJob], None], plugin_settings: Callable[[type[DocsSettings]], DocsSettings]
) -> None:
    own = plugin_settings(DocsSettings)
    register(PeriodicJob(name=JOB_NAME, task=TASK_NAME, every=own.CELERY_DOCS_SYNC_INTERVAL, enabled=own.CELERY_DOCS_SYNC_ENABLED))


@hookimpl
def register_commands(cli: click.Group) -> None:
    from pi_docs.commands import feed_docs

    cli.add_command(feed_docs)


@hookimpl
def register_health_checks(register: Callable[[HealthCheck], None]) -> None:
    from pi_docs.tasks import docs_health

    register(HealthCheck(name="docs", run=docs_health))
