"""The upgrade: an index the first version wrote (ids ``chats:<chat>[:<message>]``) is re-keyed with no manual step.

The old index is written the way the first version wrote it: the same documents through the real pipeline, under
the old ids, and the chat rows of ``pi_chats``. Then the upgrade runs (as a worker start, the retry pass, or
directly), twice, and after simulated crashes at each step.
"""

from __future__ import annotations

import threading

import pytest
from pi_chats import ids, rekey, store
from pi_chats.indexing import ChatIndex
from pi_chats.payloads import ChatMessage
from sqlalchemy import create_engine, select, text

from pi_framework import runtime
from pi_framework.contract.sinks import SearchQuery
from pi_framework.db import with_driver
from pi_framework.db.models import IndexedChunk, IndexedDocument, SyncState
from pi_framework.pipeline.indexer import Indexer
from pi_framework.pipeline.ledger import Ledger

ALICE = [
    {"chat_id": "c1", "message_id": "m1", "text": "How do we rotate the staging certificates?", "minute": 0},
    {"chat_id": "c1", "message_id": "m2", "text": "Run the certbot job, then reload nginx", "minute": 1, "role": "assistant"},
]
BOB = [{"chat_id": "c2", "message_id": "m:with:colons", "text": "certificates for the mobile build", "minute": 0}]
#: alice's documents in the old index (c3's too: deleted, never purged)
OLD_ALICE = {"chats:c1", "chats:c1:m1", "chats:c1:m2", "chats:c3", "chats:c3:m1"}
GONE = [{"chat_id": "c3", "message_id": "m1", "text": "certificates of a chat deleted before the upgrade", "minute": 0}]


def payload(workspace_id: str, user_id: str, chat_id: str, message_id: str, text: str, minute: int, role: str = "user") -> dict:
    created = f"2026-11-28T09:{minute:02d}:00Z"
    return dict(
        workspace_id=workspace_id,
        chat_id=chat_id,
        message_id=message_id,
        user_id=user_id,
        role=role,
        text=text,
        created_at=created,
    )


def write_first_version_index(chats: ChatIndex) -> set[str]:
    """What the first version left behind; returns the new ids the upgrade must give the live chats."""
    messages = [ChatMessage.model_validate(payload("ws-a", "alice", **m)) for m in ALICE + GONE]
    messages += [ChatMessage.model_validate(payload("ws-b", "bob", **m)) for m in BOB]
    with chats.database.session() as session:
        admission = store.admit(session, messages)
    documents = []
    for message, chat in admission.accepted:
        document = chats.message_document(message, chat)
        document.id = ids.legacy_document_id(message.chat_id, message.message_id)
        documents.append(document)
    for chat in admission.retitled.values():
        document = chats.title_document(chat)
        document.id = ids.legacy_document_id(chat.chat_id)
        documents.append(document)
    stats = chats.indexer.index(documents)
    assert (stats.documents_indexed, stats.failed) == (7, {})
    with chats.database.session() as session:  # chat c3 was deleted, but its documents were never purged
        store.tombstone(session, "ws-a", "c3")
    expected = {ids.document_id("ws-a", "c1"), ids.document_id("ws-b", "c2")}
    expected |= {ids.document_id(m.workspace_id, m.chat_id, m.message_id) for m in messages if m.chat_id != "c3"}
    return expected


def ledger_ids(chats: ChatIndex) -> tuple[set[str], set[str]]:
    with chats.database.session() as session:
        documents = set(session.scalars(select(IndexedDocument.document_id).where(IndexedDocument.source == "chats")))
        chunks = set(session.scalars(select(IndexedChunk.document_id)))
    return documents, chunks


def sink_ids() -> set[str]:
    """Every document id in the configured sink (read back the way the upgrade reads it)."""
    [sink] = runtime.get_sinks()
    if sink.name == "embedded":
        with sink._lock:  # noqa: SLF001
            return {row[0] for row in sink.connection.execute("SELECT DISTINCT document_id FROM chunks")}
    sink.client.indices.refresh(index=f"{sink.prefix}-chats")
    response = sink.client.search(index=f"{sink.prefix}-chats", body={"size": 1000, "query": {"match_all": {}}})
    return {hit["_source"]["document_id"] for hit in response["hits"]["hits"]}


def assert_only_new_ids(chats: ChatIndex, expected: set[str], found) -> None:
    documents, chunks = ledger_ids(chats)
    assert documents == chunks == sink_ids() == expected
    certificates = {ids.document_id("ws-a", "c1"), ids.document_id("ws-a", "c1", "m1"), ids.document_id("ws-a", "c1", "m2")}
    assert found.ids("certificates certbot") == certificates
    assert found.ids("certificates", user_id="bob", workspace_id="ws-b") == {
        ids.document_id("ws-b", "c2"),
        ids.document_id("ws-b", "c2", "m:with:colons"),
    }
    [sink] = runtime.get_sinks()
    vector = runtime.get_embedder().embed([ALICE[0]["text"]])[0].tolist()
    nearest = sink.search_vector(SearchQuery("ws-a", vector=vector, kinds=["chats"], user_id="alice", limit=2))
    # the message and its chat's title (the same words) are the nearest: the vectors were copied with the text
    assert {hit.document_id for hit in nearest} == {ids.document_id("ws-a", "c1"), ids.document_id("ws-a", "c1", "m1")}


@pytest.fixture(params=["sqlite", "postgres"])
def database_env(request) -> dict[str, str]:
    return {} if request.param == "sqlite" else {"PI_DATABASE_URL": request.getfixturevalue("postgres_url")}


@pytest.fixture(params=["embedded", "opensearch"])
def sink_env(request) -> dict[str, str]:
    """The embedded sink, or OpenSearch: the real test node (k-NN, delete-by-query) under a prefix of this test's own."""
    if request.param == "embedded":
        return {"PI_SINKS": "embedded"}
    return dict(request.getfixturevalue("opensearch_env"))


@pytest.fixture
def chats(pi_env, database_env, sink_env) -> ChatIndex:
    pi_env(PI_EMBEDDER="hashing", **database_env, **sink_env)
    return ChatIndex()


def test_upgrade_rekeys_the_first_version_index_once(chats, found):
    expected = write_first_version_index(chats)
    assert found.ids("certificates certbot") == OLD_ALICE, "the old index as it was"

    stats = rekey.ensure_rekeyed(chats.database, chats.indexer.sinks)
    assert (stats.legacy, stats.rekeyed, stats.already, stats.dropped, stats.failed, stats.complete) == (7, 5, 0, 2, {}, True)
    assert_only_new_ids(chats, expected, found)
    assert rekey.ensure_rekeyed(chats.database, chats.indexer.sinks) is None, "done: the marker says so"
    again = rekey.ensure_rekeyed(chats.database, chats.indexer.sinks, force=True)
    assert (again.legacy, again.rekeyed, again.complete) == (0, 0, True), "a second run finds nothing to do"
    assert_only_new_ids(chats, expected, found)
    redelivered = chats.index_messages([ChatMessage.model_validate(payload("ws-a", "alice", **ALICE[0]))])
    assert (redelivered.indexed, redelivered.unchanged) == (0, 2), "content hashes were carried over: nothing re-embedded"


@pytest.mark.parametrize("sink_env", ["embedded"], indirect=True)
@pytest.mark.parametrize("crash", ["before-recording", "before-deleting-old", "midway-through-deleting"])
def test_an_upgrade_killed_halfway_is_finished_by_the_next_run(chats, found, monkeypatch, crash):
    expected = write_first_version_index(chats)
    original_apply, original_delete = Ledger.apply, Indexer.delete_documents

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    if crash == "before-recording":
        monkeypatch.setattr(Ledger, "apply", killed)
    elif crash == "before-deleting-old":
        monkeypatch.setattr(Indexer, "delete_documents", killed)
    else:  # old ids gone from the sink, still in the ledger

        def sinks_only(self, document_ids):
            self._delete_from_sinks(list(document_ids))
            raise KeyboardInterrupt("killed")

        monkeypatch.setattr(Indexer, "delete_documents", sinks_only)
    with pytest.raises(KeyboardInterrupt):
        rekey.ensure_rekeyed(chats.database, chats.indexer.sinks)
    monkeypatch.setattr(Ledger, "apply", original_apply)
    monkeypatch.setattr(Indexer, "delete_documents", original_delete)

    documents, _ = ledger_ids(chats)
    assert {doc_id for doc_id in documents if doc_id.startswith("chats:")}, "old ids are still in the ledger"
    stats = rekey.ensure_rekeyed(chats.database, chats.indexer.sinks)
    assert stats.complete and stats.failed == {}
    assert stats.rekeyed + stats.already == 5
    if crash != "before-recording":
        assert stats.already == 5, "what the first run recorded is not copied again"
    assert_only_new_ids(chats, expected, found)


@pytest.mark.parametrize("sink_env", ["embedded"], indirect=True)
@pytest.mark.parametrize("database_env", ["sqlite"], indirect=True)
def test_deleting_a_chat_halfway_through_the_upgrade_removes_old_and_new_ids(chats, found, monkeypatch):
    write_first_version_index(chats)
    monkeypatch.setattr(Ledger, "apply", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt("killed")))
    with pytest.raises(KeyboardInterrupt):  # new chunks are in the sink, recorded nowhere
        rekey.ensure_rekeyed(chats.database, chats.indexer.sinks)
    monkeypatch.undo()
    assert ids.document_id("ws-a", "c1", "m1") in sink_ids()
    assert chats.delete_chat("ws-a", "c1") == 3
    assert {doc_id for doc_id in sink_ids() if "c1" in doc_id} == set(), "old ids and their unrecorded twins are gone"
    assert found.ids("certificates certbot") == {"chats:c3", "chats:c3:m1"}, "c3: deleted, left unpurged by the old version"
    assert rekey.ensure_rekeyed(chats.database, chats.indexer.sinks).complete
    assert found.ids("certificates certbot") == set()


@pytest.mark.parametrize("sink_env", ["embedded"], indirect=True)
def test_one_process_at_a_time_and_the_worker_start_hook_runs_it(chats, found, database_env, tmp_path):
    import pi_chats

    expected = write_first_version_index(chats)
    if database_env:  # PostgreSQL: another process holds the advisory lock
        engine = create_engine(with_driver(database_env["PI_DATABASE_URL"]))
        holder = engine.connect()
        holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": rekey._LOCK_KEY})  # noqa: SLF001
        release = lambda: (holder.close(), engine.dispose())  # noqa: E731
    else:  # SQLite: another process holds the lock file
        import fcntl

        handle = rekey._lock_path(chats.database.url, chats.settings).open("a+b")  # noqa: SLF001
        fcntl.flock(handle, fcntl.LOCK_EX)
        release = handle.close
    try:
        assert rekey.ensure_rekeyed(chats.database, chats.indexer.sinks) is None, "someone else is at it"
        assert found.ids("certificates certbot") == OLD_ALICE, "nothing touched"
    finally:
        release()

    pi_chats.worker_start(settings=chats.settings)  # what a starting worker process does
    [thread] = [thread for thread in threading.enumerate() if thread.name == "pi-chats-rekey"]
    thread.join(60)
    assert_only_new_ids(chats, expected, found)
    with chats.database.session() as session:
        marker = session.get(SyncState, (rekey.MARKER_SOURCE, rekey.MARKER_SCOPE))
        assert marker.cursor["version"] == rekey.VERSION and marker.cursor["rekeyed"] == 5


@pytest.mark.parametrize("sink_env", ["embedded"], indirect=True)
@pytest.mark.parametrize("database_env", ["sqlite"], indirect=True)
def test_the_retry_pass_resumes_an_unfinished_upgrade(chats, found):
    expected = write_first_version_index(chats)
    assert chats.retry_pending() == {"parked_retried": 0, "parked_indexed": 0, "deletions_finished": 1}, (
        "and finishes the deletion of c3 the old version left unpurged"
    )
    assert_only_new_ids(chats, expected, found)


@pytest.mark.parametrize("sink_env", ["embedded"], indirect=True)
@pytest.mark.parametrize("database_env", ["sqlite"], indirect=True)
def test_pi_chats_rekey_command_runs_it_again_on_demand(chats, found):
    from click.testing import CliRunner

    from pi_framework.cli import build_cli

    expected = write_first_version_index(chats)
    result = CliRunner().invoke(build_cli(), ["chats-rekey"])
    assert result.exit_code == 0, result.output
    assert "7 first-version chat document(s): 5 re-keyed, 0 already re-keyed, 2 dropped, 0 left" in result.output
    assert_only_new_ids(chats, expected, found)
    again = CliRunner().invoke(build_cli(), ["chats-rekey"])  # ignores the marker (an old worker may have written more)
    assert (again.exit_code, again.output.strip()) == (
        0,
        "0 first-version chat document(s): 0 re-keyed, 0 already re-keyed, 0 dropped, 0 left for the next run",
    )
