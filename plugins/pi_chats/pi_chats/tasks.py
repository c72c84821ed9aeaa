"""The Celery tasks a chat service calls with ``send_task`` (no result backend needed)."""

from __future__ import annotations

from typing import Any

from celery import Task
from loguru import logger
from sqlalchemy.exc import OperationalError

from pi_chats.indexing import ChatIndex
from pi_chats.payloads import ChatDeletion, ChatMessage, parse_task_payload
from pi_framework.contributions import TASK_PREFIX
from pi_framework.db import DatabaseUnavailable
from pi_framework.sinks.base import SinkError

INDEX_TASK = f"{TASK_PREFIX}index_chat_message"
DELETE_TASK = f"{TASK_PREFIX}delete_chat"


class IndexingFailed(RuntimeError):
    """Some documents did not reach every sink; the task is retried."""


#: transient failures (database or sink unreachable, lock timeouts, deadlocks) are retried with backoff;
#: a malformed payload never is (it is logged and dropped)
RETRY_OPTIONS: dict[str, Any] = {
    "bind": True,
    "autoretry_for": (DatabaseUnavailable, OperationalError, SinkError, ConnectionError, TimeoutError, IndexingFailed),
    "max_retries": 5,
}


def index_chat_message(task: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """``index_chat_message(workspace_id, chat_id, message_id, user_id, role, text, created_at, title=None)``."""
    message = parse_task_payload(ChatMessage, INDEX_TASK, args, kwargs)
    if message is None:
        return {"rejected": 1}
    stats = ChatIndex().index_messages([message])
    if stats.failed:
        for doc_id, reason in stats.failed.items():
            logger.warning("{} not indexed (attempt {}): {}", doc_id, task.request.retries + 1, reason)
        raise IndexingFailed(f"{len(stats.failed)} document(s) not indexed")
    return stats.as_dict()


def delete_chat(task: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """``delete_chat(workspace_id, chat_id)``: remove the chat's title and messages from the index."""
    deletion = parse_task_payload(ChatDeletion, DELETE_TASK, args, kwargs)
    if deletion is None:
        return {"rejected": 1}
    deleted = ChatIndex().delete_chat(deletion.workspace_id, deletion.chat_id)
    logger.info("chat {} deleted from workspace {}: {} document(s) removed", deletion.chat_id, deletion.workspace_id, deleted)
    return {"deleted": deleted}
