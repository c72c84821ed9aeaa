"""Chat document ids: the one place they are built and parsed.

A chat is keyed by ``(workspace_id, chat_id)``, so its ids carry the workspace::

    chat:<workspace>:<chat>             the chat itself (its title)
    chat:<workspace>:<chat>:<message>   one message

Each part is escaped so that it never contains the separator: ``%`` ``:`` ``#`` ``~`` become ``%25``
``%3A`` ``%23`` ``%7E`` (``#`` separates a chunk's index from its document id). A part whose escaped
form is longer than :data:`MAX_PART_BYTES` UTF-8 bytes is replaced by ``~`` and 40 hex digits of its
SHA-256: ids stay unambiguous and every id fits the ledger's columns, the indexer's 512-character limit
and OpenSearch's 512-byte ``_id`` (three 200-character parts could not, escaped or multi-byte).

The prefix is ``chat:``, not the ``chats:`` of the first version (``chats:<chat>[:<message>]``, without
the workspace, see :func:`parse_legacy`): an old message id ``chats:c1:m1`` has the shape of a title id
``chats:<workspace>:<chat>``, so a prefix of its own is what lets the upgrade (:mod:`pi_chats.rekey`)
tell every old id from every new one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

PREFIX = "chat:"
LEGACY_PREFIX = "chats:"
SEPARATOR = ":"
#: longest escaped part kept readable; longer ones are hashed (3 × 150 + 7 = 457 bytes at most per document id)
MAX_PART_BYTES = 150
_HASHED = "~"
_ESCAPES = {"%": "%25", ":": "%3A", "#": "%23", "~": "%7E"}
_UNSAFE = re.compile("[%:#~]")
_ESCAPED = re.compile("%(25|3A|23|7E)")
_UNESCAPES = {code[1:]: char for char, code in _ESCAPES.items()}


def _part(value: str) -> str:
    if not value:
        raise ValueError("a chat document id part cannot be empty")
    escaped = _UNSAFE.sub(lambda match: _ESCAPES[match.group()], value)
    if len(escaped.encode("utf-8", errors="surrogatepass")) <= MAX_PART_BYTES:
        return escaped
    return _HASHED + hashlib.sha256(value.encode("utf-8", errors="surrogatepass")).hexdigest()[:40]


def _unpart(part: str) -> str | None:
    """The original value of an escaped part; ``None`` for a hashed one (it cannot be reversed)."""
    return None if part.startswith(_HASHED) else _ESCAPED.sub(lambda match: _UNESCAPES[match.group(1)], part)


def document_id(workspace_id: str, chat_id: str, message_id: str | None = None) -> str:
    """The id of a chat's title document, or of one of its messages when *message_id* is given."""
    parts = [workspace_id, chat_id] if message_id is None else [workspace_id, chat_id, message_id]
    return PREFIX + SEPARATOR.join(_part(part) for part in parts)


def messages_prefix(workspace_id: str, chat_id: str) -> str:
    """What the id of every message of the chat (and of no other chat) starts with."""
    return document_id(workspace_id, chat_id) + SEPARATOR


@dataclass(frozen=True)
class ChatDocumentId:
    """A parsed id. A part that was too long to keep is ``None`` (its hash is in :attr:`raw`)."""

    raw: str
    workspace_id: str | None
    chat_id: str | None
    message_id: str | None
    is_message: bool


def parse(doc_id: str) -> ChatDocumentId | None:
    """Split an id made by :func:`document_id`; ``None`` if it is not one."""
    if not doc_id.startswith(PREFIX):
        return None
    parts = doc_id[len(PREFIX) :].split(SEPARATOR)
    if len(parts) not in (2, 3) or not all(parts):
        return None
    values = [_unpart(part) for part in parts]
    return ChatDocumentId(doc_id, values[0], values[1], values[2] if len(parts) == 3 else None, len(parts) == 3)


# ---------------------------------------------------------------------- the first version's ids
def legacy_document_id(chat_id: str, message_id: str | None = None) -> str:
    """An id as the first version wrote it (``chats:<chat>`` / ``chats:<chat>:<message>``, no workspace)."""
    return f"{LEGACY_PREFIX}{chat_id}" if message_id is None else f"{LEGACY_PREFIX}{chat_id}{SEPARATOR}{message_id}"


def parse_legacy(doc_id: str) -> tuple[str, str | None] | None:
    """``(chat_id, message_id or None)`` of a first-version id; ``None`` if it is not one.

    Unambiguous: a chat id never contained ``:``, so the first ``:`` after the prefix ends it and the
    rest (which may contain ``:``) is the message id.
    """
    if not doc_id.startswith(LEGACY_PREFIX):
        return None
    chat_id, separator, message_id = doc_id[len(LEGACY_PREFIX) :].partition(SEPARATOR)
    if not chat_id or (separator and not message_id):
        return None
    return chat_id, message_id or None


def legacy_messages_prefix(chat_id: str) -> str:
    return legacy_document_id(chat_id) + SEPARATOR
