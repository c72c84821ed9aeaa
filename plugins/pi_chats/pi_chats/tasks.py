"""The Celery tasks a chat service calls with ``send_task`` (no result backend needed), and the retry pass."""

from __future__ import annotations

import random
from typing import Any

from celery import Task
from loguru import logger
from sqlalchemy.exc import OperationalError

from pi_chats import backlog
from pi_chats import metrics as chat_metrics
from pi_chats.indexing import ChatIndex
from pi_chats.payloads import ChatDeletion, ChatMessage, parse_task_payload
from pi_chats.settings import chats_settings
from pi_framework.api import TASK_PREFIX, DatabaseUnavailable, SinkError, redact_task_arguments

INDEX_TASK = f"{TASK_PREFIX}index_chat_message"
DELETE_TASK = f"{TASK_PREFIX}delete_chat"
RETRY_TASK = f"{TASK_PREFIX}retry_chats"
#: longest wait between two retries of one task
MAX_BACKOFF = 600


class IndexingFailed(RuntimeError):
    """Some documents did not reach every sink."""


#: transient failures (database or sink unreachable, lock timeouts, deadlocks, a write not confirmed);
#: a malformed payload is not one of them: it is logged and dropped, never retried
TRANSIENT = (DatabaseUnavailable, OperationalError, SinkError, ConnectionError, TimeoutError, IndexingFailed)
#: the tasks count their retries themselves (``PI_CHATS_MAX_RETRIES``), so Celery's own limit is off
#: and task events (celery events, Flower) show the ids, never a message's text or a chat's title
TASK_OPTIONS: dict[str, Any] = {
    "bind": True,
    "max_retries": None,
    **redact_task_arguments(ChatMessage.model_fields, "text", "title"),
}


def _retry(task: Task, exc: Exception) -> bool:
    """Raise Celery's ``Retry`` (exponential backoff with jitter) or, once the retries are spent, return ``False``."""
    attempt = task.request.retries
    if attempt >= chats_settings().PI_CHATS_MAX_RETRIES:
        return False
    countdown = min(MAX_BACKOFF, 2**attempt) * random.uniform(0.5, 1.0)  # jitter: retries of many messages spread out
    raise task.retry(exc=exc, countdown=countdown)


def index_chat_message(task: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """``index_chat_message(workspace_id, chat_id, message_id, user_id, role, text, created_at, title=None)``."""
    message = parse_task_payload(ChatMessage, INDEX_TASK, args, kwargs)
    if message is None:
        chat_metrics.chat_messages("rejected")
        return {"rejected": 1}
    index = ChatIndex()
    try:
        stats = index.index_messages([message])
        if stats.failed:
            raise IndexingFailed("; ".join(f"{doc_id}: {reason}" for doc_id, reason in stats.failed.items()))
    except TRANSIENT as exc:
        logger.warning(
            "{} not indexed (attempt {}): {}: {}", message.document_id, task.request.retries + 1, type(exc).__name__, exc
        )
        if not _retry(task, exc):
            _park(index, message, exc)
            chat_metrics.chat_messages("parked")
            return {"parked": 1}
    chat_metrics.chat_messages("rejected" if stats.rejected else "dropped" if stats.dropped_deleted else "indexed")
    return stats.as_dict()


def _park(index: ChatIndex, message: ChatMessage, exc: Exception) -> None:
    try:
        backlog.park(index.database, message, f"{type(exc).__name__}: {exc}")
    except Exception:
        logger.error("{} could not be parked either: it is lost unless sent again (or backfilled)", message.document_id)
        raise


def delete_chat(task: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """``delete_chat(workspace_id, chat_id)``: remove the chat's title and messages from the index."""
    deletion = parse_task_payload(ChatDeletion, DELETE_TASK, args, kwargs)
    if deletion is None:
        return {"rejected": 1}
    try:
        deleted = ChatIndex().delete_chat(deletion.workspace_id, deletion.chat_id)
    except TRANSIENT as exc:
        if not _retry(task, exc):
            logger.error(
                "chat {} not purged yet ({}): the retry_chats pass finishes it once its tombstone is recorded",
                deletion.chat_id,
                exc,
            )
            return {"deleted": 0, "pending": 1}
    logger.info("chat {} deleted from workspace {}: {} document(s) removed", deletion.chat_id, deletion.workspace_id, deleted)
    return {"deleted": deleted}


def retry_chats() -> dict[str, int]:
    """Periodic: index parked messages again and finish deletions the sinks refused earlier."""
    counts = ChatIndex().retry_pending()
    chat_metrics.chat_messages("unparked", counts.get("parked_indexed", 0))
    return counts
