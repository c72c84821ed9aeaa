"""Work the index refused for longer than a task's retries: parked messages and unfinished chat deletions.

A push source has no other copy of its work (the chat service sent each message once), so when a sink
stays down past the retries, the message is parked in the PI database and the periodic
``retry_chats`` pass indexes it again; a deletion whose sink delete failed is finished by the same
pass (the chat's tombstone has no ``purged_at`` yet).
"""

from __future__ import annotations

from typing import Any

from loguru import logger
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from pi_chats.models import ParkedChatMessage
from pi_chats.payloads import ChatMessage, storable
from pi_framework.api import Database

#: parked messages indexed again per pass (one indexing batch)
BATCH = 256


def park(database: Database, message: ChatMessage, reason: str) -> None:
    """Keep *message* for the next retry pass (a second parking of the same message just updates it)."""
    key = (message.workspace_id, message.chat_id, message.message_id)
    with database.session() as session:
        row = session.get(ParkedChatMessage, key) or ParkedChatMessage(
            workspace_id=key[0], chat_id=key[1], message_id=key[2], payload={}
        )
        row.payload, row.last_error = message.model_dump(mode="json"), storable(reason)[:2000]
        session.add(row)
    logger.error("chats: {} parked after its retries ({}); the retry_chats pass will index it", message.document_id, reason)


def parked(database: Database, limit: int = BATCH) -> list[ChatMessage]:
    """The oldest parked messages."""
    with database.session() as session:
        query = select(ParkedChatMessage.payload).order_by(ParkedChatMessage.parked_at).limit(limit)
        return [ChatMessage.model_validate(payload) for payload in session.scalars(query)]


def settle(database: Database, messages: list[ChatMessage], failed: dict[str, str]) -> None:
    """Unpark what went through; count an attempt on what did not."""
    with database.session() as session:
        for message in messages:
            key = (message.workspace_id, message.chat_id, message.message_id)
            if message.document_id in failed:
                row = session.get(ParkedChatMessage, key)
                if row is not None:
                    row.attempts, row.last_error = row.attempts + 1, storable(failed[message.document_id])[:2000]
            else:
                session.execute(delete(ParkedChatMessage).where(*_is(key)))


def forget_chat(session: Session, workspace_id: str, chat_id: str) -> None:
    """Drop the parked messages of a deleted chat (their text must not outlive the chat)."""
    session.execute(
        delete(ParkedChatMessage).where(ParkedChatMessage.workspace_id == workspace_id, ParkedChatMessage.chat_id == chat_id)
    )


def count(database: Database) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(ParkedChatMessage)) or 0


def _is(key: tuple[str, str, str]) -> tuple[Any, ...]:
    workspace_id, chat_id, message_id = key
    return (
        ParkedChatMessage.workspace_id == workspace_id,
        ParkedChatMessage.chat_id == chat_id,
        ParkedChatMessage.message_id == message_id,
    )
