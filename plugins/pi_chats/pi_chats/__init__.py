"""pi-framework plugin ``pi_chats``: chats and their messages, pushed by the chat service, made searchable.

Nothing polls for chats: the service that stores a message calls ``pi.celery_app.index_chat_message``
(and ``pi.celery_app.delete_chat``) with ``send_task``. Chats are private to their owner, always within
their workspace.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from pi_chats import models  # noqa: F401 - declares the pi_chats table before the schema is created
from pi_framework import hookimpl


@hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    from pi_chats.tasks import DELETE_TASK, INDEX_TASK, RETRY_OPTIONS, delete_chat, index_chat_message

    register(index_chat_message, name=INDEX_TASK, **RETRY_OPTIONS)
    register(delete_chat, name=DELETE_TASK, **RETRY_OPTIONS)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from pi_chats.backfill import chats_backfill

    cli.add_command(chats_backfill)
