"""Through a real worker and RabbitMQ: a chat service calls the tasks with ``send_task``.

Each test runs a worker subprocess on its own queue, a fresh PostgreSQL PI database and a private
``PI_DATA_DIR``; the test process searches the same sinks the worker writes to (OpenSearch: the real test node,
under an index prefix of the test's own). An OpenSearch outage is a free local port; the node "comes back" when a
TCP relay to the real node starts listening there.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from celery import Celery
from pi_chats import backlog, ids, store
from pi_chats.indexing import ChatIndex
from pi_chats.payloads import ChatMessage
from sqlalchemy import select

from pi_framework.db import get_database
from pi_framework.db.models import IndexedDocument
from pi_framework.testing.tcp_relay import TcpRelay, free_port
from pi_framework.worker_process import WorkerProcess, wait_for


def doc_id(chat_id: str, message: dict | None = None, workspace_id: str = "ws-a") -> str:
    """The document id of a chat (its title) or, given its payload, of one of its messages."""
    if message is not None:
        return ids.document_id(message["workspace_id"], chat_id, message["message_id"])
    return ids.document_id(workspace_id, chat_id)


INDEX = "pi.celery_app.index_chat_message"
DELETE = "pi.celery_app.delete_chat"
RETRY = "pi.celery_app.retry_chats"


class ChatService:
    """What a chat service does: publish tasks to the pi queue, fire and forget."""

    def __init__(self, broker_url: str, queue: str) -> None:
        self.app = Celery(broker=broker_url)
        self.queue = queue
        self.worker: WorkerProcess | None = None

    def send(self, task: str, **kwargs) -> None:
        self.app.send_task(task, kwargs=kwargs, queue=self.queue)

    def close(self) -> None:
        self.app.close()


@pytest.fixture
def start_worker(pi_env, postgres_url, rabbitmq_url, tmp_path) -> Iterator[Callable[..., ChatService]]:
    """``start_worker(concurrency=2, **env)``: this process and a worker share settings; returns the chat service's client."""
    started: list[tuple[WorkerProcess, ChatService]] = []

    def start(concurrency: int = 2, **env: str) -> ChatService:
        queue = f"pi_test_{uuid.uuid4().hex[:10]}"
        settings = {
            "PI_DATABASE_URL": postgres_url,
            "CELERY_BROKER_URL": rabbitmq_url,
            "CELERY_DEFAULT_QUEUE": queue,
            "PI_EMBEDDER": "hashing",
            **env,
        }
        pi_env(**settings)
        worker = WorkerProcess(
            {**settings, "PI_DATA_DIR": str(tmp_path / "pi-data"), "HF_HUB_OFFLINE": "1"},
            tmp_path / f"worker-{queue}.log",
            concurrency=concurrency,
        )
        worker.wait_ready()
        service = ChatService(rabbitmq_url, queue)
        service.worker = worker
        started.append((worker, service))
        return service

    yield start
    for worker, service in started:
        service.close()
        worker.stop()


@pytest.fixture(params=["embedded", "opensearch"])
def sink_env(request) -> dict[str, str]:
    if request.param == "embedded":
        return {"PI_SINKS": "embedded"}
    return dict(request.getfixturevalue("opensearch_env"))


def test_chat_service_messages_become_searchable_privately(start_worker, sink_env, message, found):
    service = start_worker(**sink_env)
    first = message("c1", "Prepare the release checklist for 2.4", minute=0)
    reply = message("c1", "Freeze, changelog, smoke tests, then tag", role="assistant", minute=1)
    later = message("c1", "Who signs off the changelog?", minute=2)
    bobs = message("c2", "My own changelog notes", user_id="bob", minute=0)
    other_ws = message("c3", "changelog in another workspace", workspace_id="ws-b", minute=0)
    # out of order and twice, with malformed payloads in between: the good ones all get through
    for payload in (later, reply, dict(first, created_at="not a date"), first, later, bobs, other_ws):
        service.send(INDEX, **payload)
    service.send(INDEX, **{k: v for k, v in reply.items() if k != "chat_id"})

    alice_ids = {doc_id("c1", m) for m in (reply, later)}
    wait_for(lambda: found.ids("changelog") == alice_ids, 90, message="alice's messages searchable")
    checklist = {doc_id("c1"), doc_id("c1", first)}  # OpenSearch shows another process's writes within its 1 s refresh
    wait_for(lambda: found.ids("checklist") >= checklist, 30, message="the chat and its first message searchable")
    hits = found.hits("checklist")
    assert {hit.metadata["title"] for hit in hits} == {"Prepare the release checklist for 2.4"}, (
        "first user message names the chat"
    )
    wait_for(lambda: found.ids("changelog", user_id="bob") == {doc_id("c2"), doc_id("c2", bobs)}, 30, message="bob's chat")
    wait_for(
        lambda: found.ids("changelog", workspace_id="ws-b") == {doc_id("c3", workspace_id="ws-b"), doc_id("c3", other_ws)},
        30,
        message="ws-b",
    )
    assert found.ids("changelog", user_id=None) == set(), "chats are never public"
    wait_for(lambda: "chat_id: Field required" in service.worker.log(), 30, message="the payload without chat_id rejected")
    assert "created_at: Input should be a valid datetime" in service.worker.log()
    assert "Retry in" not in service.worker.log(), "a malformed payload is never retried"

    service.send(DELETE, workspace_id="ws-b", chat_id="c1")  # wrong workspace: nothing happens
    service.send(DELETE, workspace_id="ws-a", chat_id="c1")
    wait_for(lambda: found.ids("checklist changelog") == set(), 60, message="chat c1 deleted")
    service.send(INDEX, **dict(reply, message_id="late-redelivery"))
    service.send(INDEX, **message("c4", "fresh chat after the delete", minute=5))
    wait_for(lambda: found.ids("fresh"), 60, message="a later message indexed")
    assert found.ids("changelog") == set(), "a message of a deleted chat arriving late stays out"
    assert found.ids("changelog", user_id="bob") == {doc_id("c2"), doc_id("c2", bobs)}


def test_semantic_search_with_the_real_model(start_worker, message, found):
    service = start_worker(concurrency=1, PI_SINKS="embedded", PI_EMBEDDER="fastembed")  # one process loads the model
    chats = {
        "release": "Steps before we ship version 2.4: freeze the branch, write the changelog, tag it",
        "dinner": "Which pizza place should we book for the team dinner on Friday?",
        "vpn": "My VPN connection drops every hour since the laptop update",
    }
    for chat_id, text in chats.items():
        service.send(INDEX, **message(chat_id, text))
    wait_for(lambda: len(found.ids("changelog pizza vpn")) == 6, 120, message="three chats indexed with the real model")
    for mode in ("vector", "hybrid"):
        hits = found.hits("how do we publish a new software release", mode=mode)
        assert hits[0].metadata["chat_id"] == "release", (mode, [(hit.document_id, hit.score) for hit in hits])
    assert found.hits("how do we publish a new software release", mode="vector", user_id="bob") == []


def _relay_to(url: str, port: int) -> TcpRelay:
    """The index coming back at ``127.0.0.1:<port>``, the address the worker was given: a relay to *url*'s host and port."""
    host, target_port = url.split("://", 1)[-1].split("@")[-1].split("/")[0].rsplit(":", 1)
    return TcpRelay((host, int(target_port)), port).on()


def test_messages_sent_while_the_index_is_down_are_indexed_once_it_is_back(start_worker, opensearch_env, message, found):
    port = free_port()
    service = start_worker(**{**opensearch_env, "OPENSEARCH_URL": f"http://127.0.0.1:{port}"})
    service.send(INDEX, **message("c1", "written during the outage"))
    wait_for(lambda: "Retry in" in service.worker.log(), 60, message="the task retried while OpenSearch is down")
    server = _relay_to(opensearch_env.url, port)
    try:
        wait_for(lambda: len(found.ids("outage")) == 2, 90, message="the message indexed once OpenSearch is back")
    finally:
        server.off()


def test_a_message_outliving_its_retries_is_parked_and_indexed_by_the_retry_pass(start_worker, opensearch_env, message, found):
    port = free_port()
    service = start_worker(**{**opensearch_env, "OPENSEARCH_URL": f"http://127.0.0.1:{port}"}, PI_CHATS_MAX_RETRIES="1")
    service.send(INDEX, **message("c1", "written during a long outage"))
    wait_for(lambda: backlog.count(get_database()) == 1, 60, message="the message parked")
    assert "parked after its retries" in service.worker.log()
    server = _relay_to(opensearch_env.url, port)
    try:
        assert found.ids("outage") == set()
        service.send(RETRY)
        wait_for(lambda: len(found.ids("outage")) == 2, 60, message="the parked message indexed by retry_chats")
        wait_for(lambda: backlog.count(get_database()) == 0, 30, message="the message unparked")
    finally:
        server.off()


def test_concurrent_workers_agree_on_one_title_and_one_document_per_message(start_worker, message, found):
    service = start_worker(concurrency=2, PI_SINKS="embedded")
    payloads = [message("c1", f"topic{minute} kiwi", minute=minute) for minute in range(30)]
    shuffled = payloads[::-1] + payloads[::3]  # newest first, and a third of them twice
    for payload in shuffled:
        service.send(INDEX, **payload)
    wait_for(lambda: len(found.ids("kiwi")) == 31, 90, message="30 messages and the chat title")
    try:
        wait_for(lambda: found.titles("kiwi") == {"c1": "topic0 kiwi"}, 30, message="the earliest message names the chat")
    except TimeoutError:
        assert found.titles("kiwi") == {"c1": "topic0 kiwi"}, service.worker.log()[-3000:]
    assert backlog.count(get_database()) == 0


def test_a_worker_start_rekeys_an_index_of_the_first_version(pi_env, postgres_url, start_worker, message, found):
    """No manual step: the index the first version wrote (ids without the workspace) is re-keyed when workers start."""
    pi_env(PI_DATABASE_URL=postgres_url, PI_EMBEDDER="hashing", PI_SINKS="embedded")
    old = ChatIndex()
    payload = ChatMessage.model_validate(message("c1", "Where is the incident runbook for the payments outage?"))
    with old.database.session() as session:
        admission = store.admit(session, [payload])
    [(_, chat)] = admission.accepted
    documents = [old.message_document(payload, chat), old.title_document(chat)]
    documents[0].id, documents[1].id = ids.legacy_document_id("c1", payload.message_id), ids.legacy_document_id("c1")
    assert old.indexer.index(documents).documents_indexed == 2
    assert found.ids("runbook") == {"chats:c1", f"chats:c1:{payload.message_id}"}

    service = start_worker(PI_SINKS="embedded")  # two pool processes: one re-keys, the other finds it done or busy
    new = {doc_id("c1"), doc_id("c1", payload.model_dump())}
    wait_for(lambda: found.ids("runbook") == new, 60, message="the worker re-keyed the old documents")
    with get_database().session() as session:
        assert set(session.scalars(select(IndexedDocument.document_id))) == new
    wait_for(lambda: "chats: re-keyed chat documents" in service.worker.log(), 30, message="the end is logged")
    assert service.worker.log().count("chats: re-keying 2 chat document(s)") == 1, "logged once"
