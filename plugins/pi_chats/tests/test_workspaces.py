"""Chats are keyed by (workspace, chat): the same chat id in two workspaces, long ids and NUL characters, on PostgreSQL.

The PI database is PostgreSQL (``postgres_url``: what production runs, and what refuses NUL and over-long values);
the sink is the embedded one, searched directly (``search_text`` / ``search_vector``), not only through ``search()``,
whose last check would hide a sink that returned another workspace's chunk.
"""

from __future__ import annotations

import uuid

import pytest
from opensearchpy import OpenSearch
from pi_chats import backlog, ids
from pi_chats.indexing import ChatIndex
from pi_chats.payloads import ChatMessage
from sqlalchemy import select

from pi_framework import runtime
from pi_framework.contract.sinks import SearchQuery
from pi_framework.db.models import IndexedChunk, IndexedDocument

A_TEXT = "alpine hiking itinerary for the team offsite"
B_TEXT = "confidential payroll figures for the quarter"


@pytest.fixture
def chats(pi_env, postgres_url) -> ChatIndex:
    pi_env(PI_EMBEDDER="hashing", PI_DATABASE_URL=postgres_url, PI_SINKS="embedded")
    return ChatIndex()


def payload(workspace_id: str, user_id: str, text: str, chat_id: str = "c1", message_id: str = "m1", **extra) -> dict:
    return {
        "workspace_id": workspace_id,
        "chat_id": chat_id,
        "message_id": message_id,
        "user_id": user_id,
        "role": "user",
        "text": text,
        "created_at": "2026-11-28T09:00:00Z",
        **extra,
    }


def index(chats: ChatIndex, *payloads: dict):
    return chats.index_messages([ChatMessage.model_validate(p) for p in payloads])


def sink_hits(workspace_id: str, text: str, user_id: str | None) -> list:
    """What the sink itself answers, text and vector, before any check of ``search()``."""
    sink = runtime.get_sinks()[0]
    vector = runtime.get_embedder().embed([text])[0].tolist()
    query = {"workspace_id": workspace_id, "kinds": ["chats"], "user_id": user_id, "limit": 50}
    return sink.search_text(SearchQuery(text=text, **query)) + sink.search_vector(SearchQuery(vector=vector, **query))


@pytest.mark.parametrize("b_owner", ["bob", "alice"], ids=["other-user", "same-user-in-both"])
def test_the_same_chat_id_in_two_workspaces_keeps_two_chats(chats, found, b_owner):
    index(chats, payload("ws-a", "alice", A_TEXT))
    for user in ("alice", b_owner, None):  # warm the sink's per-workspace vector cache of ws-a before ws-b writes
        sink_hits("ws-a", B_TEXT, user)
    stats = index(chats, payload("ws-b", b_owner, B_TEXT))  # same chat id, same message id
    assert (stats.indexed, stats.rejected, stats.failed) == (2, 0, {}), "ws-b's chat is its own, not ws-a's"

    assert found.ids("alpine", user_id="alice") == {ids.document_id("ws-a", "c1"), ids.document_id("ws-a", "c1", "m1")}
    assert found.ids("payroll", user_id=b_owner, workspace_id="ws-b") == {
        ids.document_id("ws-b", "c1"),
        ids.document_id("ws-b", "c1", "m1"),
    }
    for user in ("alice", b_owner, None):
        hits = sink_hits("ws-a", B_TEXT, user)
        assert [hit.chunk_id for hit in hits if hit.workspace_id != "ws-a" or "payroll" in hit.text] == [], user
    own = sink_hits("ws-a", A_TEXT, "alice")
    assert {hit.document_id for hit in own} >= {ids.document_id("ws-a", "c1", "m1")}, "ws-a's sink still answers ws-a"

    assert chats.delete_chat("ws-a", "c1") == 2
    assert found.ids("alpine", user_id="alice") == set()
    assert found.ids("payroll", user_id=b_owner, workspace_id="ws-b") == {
        ids.document_id("ws-b", "c1"),
        ids.document_id("ws-b", "c1", "m1"),
    }, "deleting ws-a's c1 leaves ws-b's c1 alone"
    assert {hit.document_id for hit in sink_hits("ws-b", B_TEXT, b_owner)} >= {ids.document_id("ws-b", "c1", "m1")}
    assert index(chats, payload("ws-b", b_owner, "a new message", message_id="m2")).indexed == 1, "ws-b's chat is not deleted"
    assert index(chats, payload("ws-a", "alice", "late redelivery", message_id="m3")).dropped_deleted == 1


def test_longest_ids_are_indexed_found_and_deleted_on_postgres(chats, found):
    workspace, chat, message = "w" * 200, "c" * 200, "é" * 200
    stats = index(chats, payload(workspace, "u" * 200, "lighthouse maintenance schedule", chat, message))
    assert (stats.indexed, stats.failed) == (2, {})
    with chats.database.session() as session:
        recorded = dict(session.execute(select(IndexedDocument.document_id, IndexedDocument.workspace_id)).tuples().all())
        assert set(session.scalars(select(IndexedChunk.workspace_id))) == {workspace}
    assert recorded == {ids.document_id(workspace, chat): workspace, ids.document_id(workspace, chat, message): workspace}
    assert found.ids("lighthouse", user_id="u" * 200, workspace_id=workspace) == set(recorded)
    assert chats.delete_chat(workspace, chat) == 2
    assert found.ids("lighthouse", user_id="u" * 200, workspace_id=workspace) == set()


def test_longest_multibyte_ids_fit_a_real_opensearch_node(pi_env, postgres_url, opensearch_url, found):
    """OpenSearch refuses an ``_id`` over 512 bytes: ``chats:<chat>:<message>`` of 200 multi-byte characters each did."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    pi_env(
        PI_EMBEDDER="hashing",
        PI_DATABASE_URL=postgres_url,
        PI_SINKS="opensearch",
        OPENSEARCH_URL=opensearch_url,
        OPENSEARCH_INDEX_PREFIX=prefix,
    )
    workspace, chat, message, user = "w" * 200, "ç" * 200, "📎" * 200, "u" * 200
    try:
        stats = index(ChatIndex(), payload(workspace, user, "lighthouse maintenance schedule", chat, message))
        assert (stats.indexed, stats.failed) == (2, {})
        expected = {ids.document_id(workspace, chat), ids.document_id(workspace, chat, message)}
        assert found.ids("lighthouse", user_id=user, workspace_id=workspace) == expected
        assert {hit.document_id for hit in sink_hits(workspace, "lighthouse maintenance schedule", user)} == expected
    finally:
        client = OpenSearch(hosts=[opensearch_url])
        client.indices.delete(index=f"{prefix}-*", ignore_unavailable=True)
        client.close()


def test_nul_in_title_and_text_is_indexed_on_postgres(chats, found):
    stats = index(chats, payload("ws-a", "alice", "numbers\x00 inside\x00", title="Budget\x00 review"))
    assert (stats.indexed, stats.failed) == (2, {})
    assert found.titles("budget") == {"c1": "Budget review"}
    [hit] = [hit for hit in found.hits("numbers") if ids.parse(hit.document_id).is_message]
    assert "\x00" not in hit.text and hit.title == "Budget review"


def test_parked_messages_with_the_same_ids_in_two_workspaces_stay_apart(chats, found):
    for workspace, user, text in (("ws-a", "alice", A_TEXT), ("ws-b", "bob", B_TEXT)):
        backlog.park(chats.database, ChatMessage.model_validate(payload(workspace, user, text)), "SinkError: down")
    assert backlog.count(chats.database) == 2, "one parked message per workspace, not one overwriting the other"
    chats.delete_chat("ws-a", "c1")  # drops ws-a's parked message only
    assert chats.retry_pending()["parked_indexed"] == 1
    assert found.ids("payroll", user_id="bob", workspace_id="ws-b") == {
        ids.document_id("ws-b", "c1"),
        ids.document_id("ws-b", "c1", "m1"),
    }
    assert found.ids("alpine", user_id="alice") == set()
