"""The task payloads, validated with pydantic.

A chat service sends these with ``send_task``; a payload that does not validate is logged once at
ERROR, naming the offending field, and dropped: retrying a malformed message could never succeed and
would only block the queue.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from loguru import logger
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError

from pi_chats import ids
from pi_framework.api import to_str

#: an id becomes part of a document id (:mod:`pi_chats.ids`) and of rows of the PI database: no whitespace, no
#: control character (PostgreSQL text cannot hold NUL), bounded length
Identifier = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\s\x00-\x1f\x7f]+$")
]
#: a chat id must not contain ``:`` either (the first version's ids, ``chats:<chat_id>:<message_id>``, relied on it)
ChatId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\s:\x00-\x1f\x7f]+$")
]


def storable(value: Any) -> Any:
    """Text PostgreSQL can store: NUL characters removed, lone surrogates replaced (U+FFFD); other values unchanged.

    Applied to every free-text field before validation: a NUL in a title or a message must not lose the message
    (PostgreSQL text cannot hold ``\\x00``; the title goes to ``pi_chats``, the whole payload to the parking table).
    """
    return to_str(value).replace("\x00", "") if isinstance(value, str) else value


#: free text (message, title, role): cleaned by :func:`storable` first, then validated
Text = Annotated[str, BeforeValidator(storable)]


def as_utc(value: datetime) -> datetime:
    """Timestamps without a zone are taken as UTC, so every comparison is between aware datetimes."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ChatMessage(_Payload):
    """One message of a chat, as ``index_chat_message`` receives it."""

    workspace_id: Identifier
    chat_id: ChatId
    message_id: Identifier
    user_id: Identifier
    #: ``user`` messages name a chat that has no given title; any other role (assistant, system, tool) is indexed too
    role: Annotated[Text, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=32)]
    text: Annotated[Text, StringConstraints(max_length=1_000_000)]
    created_at: Annotated[datetime, AfterValidator(as_utc)]
    title: Annotated[Text, StringConstraints(strip_whitespace=True, max_length=500)] | None = Field(default=None)

    @property
    def document_id(self) -> str:
        return ids.document_id(self.workspace_id, self.chat_id, self.message_id)


class ChatDeletion(_Payload):
    """What ``delete_chat`` receives."""

    workspace_id: Identifier
    chat_id: ChatId


def describe(error: ValidationError) -> str:
    """One line naming each bad field and why, e.g. ``created_at: Input should be a valid datetime``."""
    parts = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "payload"
        parts.append(f"{field}: {item['msg']}")
    return "; ".join(parts)


P = TypeVar("P", bound=_Payload)


def parse_task_payload(model: type[P], task: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> P | None:
    """Validate a task's arguments (positional ones in field order) or log one ERROR and return ``None``."""
    names = list(model.model_fields)
    if len(args) > len(names):
        logger.error(
            "{} rejected: {} positional arguments, expected at most {} ({})", task, len(args), len(names), ", ".join(names)
        )
        return None
    payload = {**dict(zip(names, args, strict=False)), **kwargs}
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        logger.error("{} rejected {}: {}", task, _identify(payload), describe(exc))
        return None


def _identify(payload: Mapping[str, Any]) -> str:
    """The ids a payload carries (whatever they are), so the log line says which message was dropped."""
    ids = {key: payload[key] for key in ("workspace_id", "chat_id", "message_id") if key in payload}
    return json.dumps(ids, default=str) if ids else "payload without ids"
