"""pi-framework plugin ``pi_chats``: chats and their messages, pushed by the chat service, made searchable.

Nothing polls for chats: the service that stores a message calls ``pi.celery_app.index_chat_message``
(and ``pi.celery_app.delete_chat``) with ``send_task``. Chats are private to their owner, always within
their workspace. A periodic pass (``retry_chats``) finishes what a sink outage left undone. An index the
first version wrote (document ids without the workspace) is re-keyed on worker start (:mod:`pi_chats.rekey`).
"""

from __future__ import annotations

from collections.abc import Callable

import click

from pi_chats import models  # noqa: F401 - declares the plugin's tables before the schema is created
from pi_chats.settings import ChatsSettings
from pi_framework.api import HealthCheck, PeriodicJob, Settings, hookimpl


@hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    from pi_chats import tasks

    register(tasks.index_chat_message, name=tasks.INDEX_TASK, **tasks.TASK_OPTIONS)
    register(tasks.delete_chat, name=tasks.DELETE_TASK, **tasks.TASK_OPTIONS)
    register(tasks.retry_chats, name=tasks.RETRY_TASK)


@hookimpl
def register_state_names(register: Callable[[str], None]) -> None:
    register("chats")  # chat rows of the ledger's source name, kept apart from any workspace source
    register("pi_chats")  # the re-key marker (sync_states source "pi_chats")


@hookimpl
def register_settings(register: Callable[[type], None]) -> None:
    register(ChatsSettings)


@hookimpl
def register_periodic_jobs(
    register: Callable[[PeriodicJob], None], plugin_settings: Callable[[type[ChatsSettings]], ChatsSettings]
) -> None:
    from pi_chats.tasks import RETRY_TASK

    register(PeriodicJob("retry-chats", RETRY_TASK, every=plugin_settings(ChatsSettings).PI_CHATS_RETRY_INTERVAL))


@hookimpl
def register_health_checks(register: Callable[[HealthCheck], None]) -> None:
    register(HealthCheck("chats", _health))


def _health() -> dict[str, int]:
    """Messages waiting in the backlog (a growing number means a sink keeps refusing them)."""
    from pi_chats import backlog
    from pi_framework.api import get_database

    return {"parked_messages": backlog.count(get_database())}


@hookimpl
def worker_start(settings: Settings) -> None:
    """Re-key chat documents of the first version (ids without the workspace), in the background."""
    from pi_chats import rekey

    rekey.start_in_background()


@hookimpl
def register_commands(cli: click.Group) -> None:
    from pi_chats.backfill import chats_backfill, chats_rekey

    cli.add_command(chats_backfill)
    cli.add_command(chats_rekey)
