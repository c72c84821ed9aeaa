"""The plugin's own tables in the PI database: what it must remember about each chat, and messages parked after failures."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pi_framework.api import PluginTable, utcnow


class ChatRecord(PluginTable):
    """One chat: its owner, its title and where the title came from, and whether it was deleted.

    Messages can arrive out of order, so the title is kept with the ``created_at`` of the message it
    came from: an earlier user message that arrives later still replaces it. ``deleted_at`` is a
    tombstone: a message redelivered after ``delete_chat`` must not bring the chat back.
    """

    __tablename__ = "pi_chats"

    workspace_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    chat_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(200), default=None)
    title: Mapped[str] = mapped_column(String(500), default="")
    #: the title was given by the chat service (it then wins over any derived one)
    title_given: Mapped[bool] = mapped_column(default=False)
    title_message_id: Mapped[str | None] = mapped_column(String(200), default=None)
    title_created_at: Mapped[datetime | None] = mapped_column(default=None)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    #: when the deleted chat's documents were confirmed gone from the sinks (``None``: a periodic pass finishes it)
    purged_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ParkedChatMessage(PluginTable):
    """A message the index kept refusing after every retry: kept here, indexed again by a periodic pass.

    A push source has no other copy of its work: the chat service sent the message once, so a sink
    outage longer than the task's retries must not lose it.
    """

    __tablename__ = "pi_chat_parked_messages"

    workspace_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    chat_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    payload: Mapped[dict[str, Any]] = mapped_column()
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    parked_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
