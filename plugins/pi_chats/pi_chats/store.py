"""What the plugin remembers about chats (table ``pi_chats``): owner, title, tombstone.

Rows are created with an insert that ignores conflicts and then locked (``SELECT … FOR UPDATE`` on
PostgreSQL; SQLite serialises writers anyway), in a fixed order, so concurrent workers handling
messages of the same chat neither lose a title update nor deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from pi_chats.models import ChatRecord
from pi_chats.payloads import ChatMessage, as_utc
from pi_framework.api import utcnow

#: longest title derived from a first user message (a given title is kept as sent, up to 500 characters)
DERIVED_TITLE_CHARS = 120

ChatKey = tuple[str, str]


@dataclass(frozen=True)
class ChatView:
    """A chat row as the indexer needs it (detached from any session)."""

    workspace_id: str
    chat_id: str
    user_id: str | None
    title: str
    deleted: bool

    @property
    def key(self) -> ChatKey:
        return (self.workspace_id, self.chat_id)


@dataclass
class Admission:
    """Outcome of recording a batch of messages: which to index, and the chats whose title they carry."""

    accepted: list[tuple[ChatMessage, ChatView]]
    rejected: dict[str, str]
    dropped: list[str]
    retitled: dict[ChatKey, ChatView]


def derive_title(text: str) -> str:
    """A chat title from its first user message: whitespace collapsed, cut at a word boundary."""
    words = " ".join(text.split())
    if len(words) <= DERIVED_TITLE_CHARS:
        return words
    cut = words[:DERIVED_TITLE_CHARS].rsplit(" ", 1)[0] or words[:DERIVED_TITLE_CHARS]
    return cut + "…"


def _view(row: ChatRecord) -> ChatView:
    return ChatView(row.workspace_id, row.chat_id, row.user_id, row.title, row.deleted_at is not None)


def _offers_title(row: ChatRecord, message: ChatMessage) -> bool:
    """Does *message* name the chat better than what *row* holds?

    A given title beats a derived one, and among given titles the latest message wins (a rename).
    Without a given title, the earliest user message wins. Ties are broken by message id so that
    every delivery order ends with the same title.
    """
    current = None if row.title_created_at is None else (as_utc(row.title_created_at), row.title_message_id or "")
    offered = (message.created_at, message.message_id)
    if message.title:
        return not row.title_given or current is None or offered > current
    if row.title_given or message.role != "user" or not message.text.strip():
        return False
    return current is None or offered < current


def _insert_missing(session: Session, keys: Iterable[ChatKey], owners: dict[ChatKey, str | None]) -> None:
    dialect = {"postgresql": postgresql, "sqlite": sqlite}[session.get_bind().dialect.name]
    rows = [{"workspace_id": ws, "chat_id": chat, "user_id": owners.get((ws, chat))} for ws, chat in keys]
    if rows:
        session.execute(dialect.insert(ChatRecord).values(rows).on_conflict_do_nothing())


def _lock(session: Session, keys: Sequence[ChatKey]) -> dict[ChatKey, ChatRecord]:
    query = (
        select(ChatRecord)
        .where(tuple_(ChatRecord.workspace_id, ChatRecord.chat_id).in_(keys))
        .order_by(ChatRecord.workspace_id, ChatRecord.chat_id)
        .with_for_update()
    )
    return {(row.workspace_id, row.chat_id): row for row in session.scalars(query)}


def admit(session: Session, messages: Sequence[ChatMessage]) -> Admission:
    """Record *messages* against their chats: set owners and titles, refuse what must not be indexed.

    A message of a deleted chat is dropped (a late redelivery must not resurrect it); a message whose
    ``user_id`` is not the chat's owner is rejected (indexing it under another owner would show it to
    the wrong user).
    """
    keys = sorted({(m.workspace_id, m.chat_id) for m in messages})
    first_owner: dict[ChatKey, str | None] = {}
    for message in sorted(messages, key=lambda m: m.created_at):
        first_owner.setdefault((message.workspace_id, message.chat_id), message.user_id)
    _insert_missing(session, keys, first_owner)
    rows = _lock(session, keys)
    admission = Admission(accepted=[], rejected={}, dropped=[], retitled={})
    for message in messages:
        row = rows[(message.workspace_id, message.chat_id)]
        if row.deleted_at is not None:
            admission.dropped.append(message.document_id)
            continue
        if row.user_id is None:
            row.user_id = message.user_id
        elif row.user_id != message.user_id:
            admission.rejected[message.document_id] = f"user_id {message.user_id!r} is not the owner of chat {message.chat_id!r}"
            continue
        if _offers_title(row, message):
            row.title = message.title or derive_title(message.text)
            row.title_given = bool(message.title)
            row.title_message_id = message.message_id
            row.title_created_at = message.created_at
        if row.title_message_id == message.message_id:
            # also on a redelivery: a retry after a failed write must still write the title
            admission.retitled[(row.workspace_id, row.chat_id)] = _view(row)
        admission.accepted.append((message, _view(row)))
    session.flush()
    # a chat retitled by a later message of the same batch: every view carries the final title
    views = {key: _view(row) for key, row in rows.items()}
    admission.accepted = [(message, views[(message.workspace_id, message.chat_id)]) for message, _ in admission.accepted]
    admission.retitled = {key: views[key] for key in admission.retitled}
    return admission


def read(session: Session, keys: Sequence[ChatKey]) -> dict[ChatKey, ChatView]:
    """Current state of the chats *keys* (no lock)."""
    if not keys:
        return {}
    query = select(ChatRecord).where(tuple_(ChatRecord.workspace_id, ChatRecord.chat_id).in_(keys))
    return {(row.workspace_id, row.chat_id): _view(row) for row in session.scalars(query)}


def tombstone(session: Session, workspace_id: str, chat_id: str) -> None:
    """Mark the chat deleted (creating its row if no message was seen yet)."""
    _insert_missing(session, [(workspace_id, chat_id)], {})
    row = _lock(session, [(workspace_id, chat_id)])[(workspace_id, chat_id)]
    row.deleted_at = row.deleted_at or utcnow()


def mark_purged(session: Session, workspace_id: str, chat_id: str) -> None:
    """The deleted chat's documents are confirmed gone from every sink."""
    row = session.get(ChatRecord, (workspace_id, chat_id))
    if row is not None and row.deleted_at is not None:
        row.purged_at = utcnow()


def unpurged(session: Session, limit: int) -> list[ChatKey]:
    """Deleted chats whose documents may still be in a sink (their ``delete_chat`` ran out of retries)."""
    query = (
        select(ChatRecord.workspace_id, ChatRecord.chat_id)
        .where(ChatRecord.deleted_at.is_not(None), ChatRecord.purged_at.is_(None))
        .order_by(ChatRecord.deleted_at)
        .limit(limit)
    )
    return [(workspace_id, chat_id) for workspace_id, chat_id in session.execute(query)]
