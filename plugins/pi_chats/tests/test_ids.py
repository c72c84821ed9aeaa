"""Chat document ids: workspace-scoped, unambiguous, bounded, and never confused with the first version's ids."""

from __future__ import annotations

import itertools

import pytest
from pi_chats import ids
from pi_chats.payloads import ChatMessage

from pi_framework.contract.documents import chunk_id

#: ids the payloads accept that used to be trouble: separators, escapes, the hash marker, long and multi-byte ones
TRICKY = ["a", "a:b", "a%3Ab", "a%b", "a#0", "~", "~" + "0" * 40, "x" * 150, "x" * 151, "é" * 75, "é" * 76, "📎" * 200]


def test_ids_carry_the_workspace():
    assert ids.document_id("ws-a", "c1") == "chat:ws-a:c1"
    assert ids.document_id("ws-a", "c1", "m1") == "chat:ws-a:c1:m1"
    assert ids.document_id("ws-a", "c1", "m1") != ids.document_id("ws-b", "c1", "m1")
    assert ids.messages_prefix("ws-a", "c1") == "chat:ws-a:c1:"


def test_every_combination_gives_its_own_id_and_no_chat_prefix_covers_another_chat():
    chats = [part for part in TRICKY if ":" not in part]
    made = {}
    for workspace, chat in itertools.product(TRICKY, chats):
        made[ids.document_id(workspace, chat)] = (workspace, chat, None)
        for message in TRICKY:
            made[ids.document_id(workspace, chat, message)] = (workspace, chat, message)
    assert len(made) == len(TRICKY) * len(chats) * (1 + len(TRICKY)), "two different keys gave the same id"
    for doc_id, (workspace, chat, message) in made.items():
        assert doc_id.count(ids.SEPARATOR) == (3 if message else 2) and "#" not in doc_id
        covered = doc_id.startswith(ids.messages_prefix(workspace, chat))
        assert covered == (message is not None)
    for (workspace, chat) in itertools.product(TRICKY[:4], chats[:4]):
        prefix = ids.messages_prefix(workspace, chat)
        others = [key for doc_id, key in made.items() if doc_id.startswith(prefix)]
        assert {key[:2] for key in others} == {(workspace, chat)}


def test_parse_gives_back_the_parts_or_none_for_a_hashed_one():
    parsed = ids.parse(ids.document_id("w:1", "c%1", "m#1"))
    assert (parsed.workspace_id, parsed.chat_id, parsed.message_id, parsed.is_message) == ("w:1", "c%1", "m#1", True)
    title = ids.parse(ids.document_id("w", "c"))
    assert (title.chat_id, title.message_id, title.is_message) == ("c", None, False)
    hashed = ids.parse(ids.document_id("w", "c" * 200, "m"))
    assert (hashed.workspace_id, hashed.chat_id, hashed.message_id) == ("w", None, "m")
    assert ids.parse("chats:c1:m1") is None and ids.parse("issues:1") is None


@pytest.mark.parametrize("part", ["x" * 200, "é" * 200, "📎" * 200, "%" * 200, ":" * 200])
def test_the_longest_ids_fit_the_ledger_the_indexer_and_opensearch(part):
    chat = part.replace(":", "c")
    doc_id = ids.document_id(part, chat, part)
    assert len(doc_id.encode()) <= 5 + 3 * ids.MAX_PART_BYTES + 2 < 512 - len("#199")
    assert len(chunk_id(doc_id, 199).encode()) <= 512, "OpenSearch refuses an _id longer than 512 bytes"


def test_old_and_new_ids_are_never_confused():
    # a first-version message id has the shape of a new title id: the prefixes tell them apart
    old_message = ids.legacy_document_id("ws-a", "c1")
    assert old_message == "chats:ws-a:c1" and ids.parse(old_message) is None
    assert ids.parse_legacy(ids.document_id("ws-a", "c1")) is None
    assert ids.parse_legacy("chats:c1") == ("c1", None)
    assert ids.parse_legacy("chats:c1:m:with:colons") == ("c1", "m:with:colons")
    assert ids.parse_legacy("chats:") is None and ids.parse_legacy("chats:c1:") is None


def test_a_message_document_id_is_the_one_of_pi_chats_ids():
    message = ChatMessage(
        workspace_id="ws:1", chat_id="c1", message_id="m#1", user_id="u", role="user", text="t", created_at="2026-01-01T00:00Z"
    )
    assert message.document_id == ids.document_id("ws:1", "c1", "m#1") == "chat:ws%3A1:c1:m%231"
