"""Payload validation: a malformed message is refused with one ERROR line naming the field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from loguru import logger
from pi_chats.payloads import ChatDeletion, ChatMessage, parse_task_payload
from pi_chats.store import derive_title

GOOD = {
    "workspace_id": "ws-1",
    "chat_id": "chat-1",
    "message_id": "m-1",
    "user_id": "u-1",
    "role": "user",
    "text": "How do we cut a release?",
    "created_at": "2026-11-28T10:00:00Z",
}


@pytest.fixture
def errors():
    lines: list[str] = []
    handler = logger.add(lines.append, level="ERROR", format="{message}")
    yield lines
    logger.remove(handler)


def test_valid_payload_by_keyword_and_position(errors):
    by_keyword = parse_task_payload(ChatMessage, "index", (), GOOD)
    by_position = parse_task_payload(ChatMessage, "index", tuple(GOOD.values()), {})
    assert by_keyword == by_position
    assert by_keyword.document_id == f"chat:{GOOD['workspace_id']}:chat-1:m-1"
    assert by_keyword.created_at == datetime(2026, 11, 28, 10, tzinfo=UTC)
    assert errors == []


def test_naive_timestamps_are_utc():
    message = ChatMessage.model_validate({**GOOD, "created_at": "2026-11-28T10:00:00"})
    assert message.created_at.tzinfo is not None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"created_at": "yesterday-ish"}, "created_at"),
        ({"text": None}, "text"),
        ({"chat_id": "a:b"}, "chat_id"),
        ({"message_id": "has space"}, "message_id"),
        ({"user_id": ""}, "user_id"),
        ({"workspace_id": 42}, "workspace_id"),
    ],
)
def test_malformed_field_is_named_once(errors, change, field):
    assert parse_task_payload(ChatMessage, "pi.celery_app.index_chat_message", (), {**GOOD, **change}) is None
    assert len(errors) == 1
    assert f"{field}:" in errors[0] and "pi.celery_app.index_chat_message" in errors[0]
    assert '"message_id"' in errors[0]  # the log line says which message was dropped


def test_missing_field_and_too_many_arguments(errors):
    payload = {key: value for key, value in GOOD.items() if key != "role"}
    assert parse_task_payload(ChatMessage, "index", (), payload) is None
    assert "role: Field required" in errors[0]
    assert parse_task_payload(ChatDeletion, "delete", ("ws", "chat", "extra"), {}) is None
    assert "3 positional arguments" in errors[1]


def test_derived_title_is_short_and_cut_at_a_word():
    assert derive_title("  release\n checklist  ") == "release checklist"
    long = derive_title("word " * 100)
    assert len(long) <= 121 and long.endswith("word…")
