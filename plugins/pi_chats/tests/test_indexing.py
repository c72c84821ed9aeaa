"""Chat indexing in-process (SQLite PI database, embedded sink, hashing embedder): titles, duplicates, order, deletion;
a deletion OpenSearch refused, on the real test node."""

from __future__ import annotations

import socket

import pytest
from pi_chats import backlog, ids
from pi_chats.indexing import ChatIndex
from pi_chats.payloads import ChatMessage

from pi_framework.contract.sinks import SinkError


def doc_id(chat_id: str, message: dict | None = None, workspace_id: str = "ws-a") -> str:
    """The document id of a chat (its title) or, given its payload, of one of its messages."""
    if message is not None:
        return ids.document_id(message["workspace_id"], chat_id, message["message_id"])
    return ids.document_id(workspace_id, chat_id)


@pytest.fixture
def chats(pi_env):
    pi_env(PI_EMBEDDER="hashing")
    return ChatIndex()


def index(chats: ChatIndex, *payloads: dict):
    return chats.index_messages([ChatMessage.model_validate(p) for p in payloads])


def test_message_is_found_and_names_its_chat(chats, message, found):
    first = message("c1", "What goes on the release checklist?")
    reply = message("c1", "Tag, [changelog](https://example.com/zebra), smoke tests.", role="assistant", minute=1)
    stats = index(chats, first, reply)
    assert (stats.indexed, stats.titles, stats.failed) == (3, 1, {})
    [hit] = found.hits("changelog")
    assert hit.document_id == doc_id("c1", reply)
    assert hit.metadata["chat_id"] == "c1" and hit.title == hit.metadata["title"] == "What goes on the release checklist?"
    assert hit.metadata["role"] == "assistant"
    assert found.ids("zebra") == set(), "Markdown: a link indexes as its text, not its URL"
    assert found.titles("checklist") == {"c1": "What goes on the release checklist?"}, "the chat itself is found by its title"


def test_duplicates_and_out_of_order_delivery_give_one_message_and_the_first_title(chats, message, found):
    early = message("c1", "Plan the offsite agenda", minute=0)
    late = message("c1", "Also book the venue", minute=5)
    reply = message("c1", "Sure, here is an agenda draft", role="assistant", minute=1)
    index(chats, late)
    assert found.titles("venue") == {"c1": "Also book the venue"}
    index(chats, reply, early, late)
    stats = index(chats, early)
    assert (stats.unchanged, stats.indexed) == (2, 0), "the message and its title document are unchanged"
    assert found.titles("venue") == {}
    assert found.titles("offsite") == {"c1": "Plan the offsite agenda"}
    assert found.ids("venue") == {doc_id("c1", late)}
    assert found.ids("draft") == {doc_id("c1", reply)}


def test_given_title_wins_and_the_latest_given_title_is_a_rename(chats, message, found):
    index(chats, message("c1", "first question", minute=0))
    index(chats, message("c1", "more", minute=3, title="Quarterly budget"))
    assert found.titles("quarterly") == {"c1": "Quarterly budget"}
    index(chats, message("c1", "even more", minute=9, title="Budget 2027"), message("c1", "older", minute=1, title="Old name"))
    assert found.titles("budget") == {"c1": "Budget 2027"}
    assert found.titles("quarterly") == found.titles("question") == {}, "the title document was replaced, not duplicated"


def test_chats_are_private_to_their_owner_and_workspace(chats, message, found):
    index(chats, message("c1", "alice salary negotiation"), message("c2", "bob salary review", user_id="bob"))
    index(chats, message("c3", "salary in another workspace", workspace_id="ws-b"))
    assert {hit.metadata["chat_id"] for hit in found.hits("salary")} == {"c1"}
    assert {hit.metadata["chat_id"] for hit in found.hits("salary", user_id="bob")} == {"c2"}
    assert found.hits("salary", user_id=None) == []
    assert {hit.metadata["chat_id"] for hit in found.hits("salary", workspace_id="ws-b")} == {"c3"}


def test_message_from_another_user_in_someone_elses_chat_is_rejected(chats, message, found):
    index(chats, message("c1", "alice owns this chat"))
    stats = index(chats, message("c1", "mallory writes here", user_id="mallory"), message("c1", "alice again", minute=2))
    assert (stats.rejected, stats.indexed) == (1, 1)
    assert found.ids("mallory", user_id="mallory") == found.ids("mallory") == set()


def test_delete_chat_removes_title_and_messages_and_later_deliveries(chats, message, found):
    kept = message("c2", "roadmap of the other chat")
    index(chats, message("c1", "roadmap draft"), message("c1", "roadmap review", minute=1), kept)
    assert chats.delete_chat("ws-b", "c1") == 0, "a chat id of another workspace deletes nothing"
    assert chats.delete_chat("ws-a", "c1") == 3
    assert found.ids("roadmap") == {doc_id("c2"), doc_id("c2", kept)}
    stats = index(chats, message("c1", "roadmap redelivered late", minute=2))
    assert stats.dropped_deleted == 1 and found.ids("redelivered") == set()


def test_without_semantic_chats_get_no_vectors(pi_env, message, found):
    pi_env(PI_EMBEDDER="hashing", PI_CHATS_SEMANTIC="0")
    stats = index(ChatIndex(), message("c1", "kubernetes upgrade plan"))
    assert (stats.indexed, stats.chunks_embedded) == (2, 0)
    assert len(found.ids("kubernetes")) == 2, "full-text search finds the title and the message"
    assert found.hits("kubernetes upgrade plan", mode="vector") == []


def test_parked_messages_are_indexed_by_the_retry_pass_unless_their_chat_was_deleted(chats, message, found):
    for payload in (message("c1", "parked invoice question"), message("c2", "parked invoice of a deleted chat")):
        backlog.park(chats.database, ChatMessage.model_validate(payload), "SinkError: down")
    chats.delete_chat("ws-a", "c2")  # its parked message goes with it
    assert backlog.count(chats.database) == 1
    assert chats.retry_pending() == {"parked_retried": 1, "parked_indexed": 1, "deletions_finished": 0}
    assert {hit.metadata["chat_id"] for hit in found.hits("invoice")} == {"c1"}
    assert backlog.count(chats.database) == 0


def test_a_deletion_the_index_refused_is_finished_by_the_retry_pass(pi_env, opensearch_env, message, found):
    live = {"PI_EMBEDDER": "hashing", **opensearch_env}
    pi_env(**live)
    index(ChatIndex(), message("c1", "budget draft"), message("c1", "budget review", minute=1))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        pi_env(**{**live, "OPENSEARCH_URL": f"http://127.0.0.1:{probe.getsockname()[1]}"})  # outage
        with pytest.raises(SinkError):
            ChatIndex().delete_chat("ws-a", "c1")
    pi_env(**live)
    opensearch_env.refresh()  # written by a sink object of before the outage: searchable now, not after the node's 1 s
    assert len(found.ids("budget")) == 3, "the sink refused the delete: still there"
    assert ChatIndex().retry_pending() == {"parked_retried": 0, "parked_indexed": 0, "deletions_finished": 1}
    assert found.ids("budget") == set()
    assert ChatIndex().retry_pending()["deletions_finished"] == 0
