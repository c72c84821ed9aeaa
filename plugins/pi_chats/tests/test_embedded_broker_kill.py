"""Issue 16, defect 6: on the embedded broker a chat message pushed with ``send_task`` survives a ``kill -9``.

Nothing but the broker message records a pushed chat message, so the broker itself must deliver a message
again when the worker that fetched it dies: 30 messages of ~25 KB are sent, the worker's whole process group
is SIGKILLed once a few are searchable, and a restarted worker makes all 30 searchable.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import uuid

import pytest
from celery import Celery

from pi_framework.worker_process import WorkerProcess, wait_for

pytestmark = pytest.mark.slow  # real worker processes, killed and restarted

INDEX = "pi.celery_app.index_chat_message"
FILLER = " ".join(f"word{n % 997} lorem ipsum dolor sit amet" for n in range(800))  # ~25 KB, no "kiwi"


def test_chat_messages_survive_a_killed_worker_on_the_embedded_broker(pi_env, message, found, tmp_path):
    queue = f"pi_test_{uuid.uuid4().hex[:10]}"
    env = {
        "CELERY_DEFAULT_QUEUE": queue,
        "PI_EMBEDDER": "hashing",
        "PI_SINKS": "embedded",
        "PI_EMBEDDED_BROKER_VISIBILITY_TIMEOUT": "3",
    }
    settings = pi_env(**env)  # this process searches the worker's embedded sink
    broker_file = settings.data_dir / "broker.sqlite"
    payloads = [message("c1", f"kiwi report {n}. {FILLER}", minute=n) for n in range(30)]
    assert all(len(payload["text"]) > 24_000 for payload in payloads)

    service = Celery(broker=f"sqla+sqlite:///{broker_file}")  # a chat service: plain kombu, fire and forget
    for payload in payloads:
        service.send_task(INDEX, kwargs=payload, queue=queue)
    service.close()

    def indexed() -> set[str]:
        return {hit.metadata["message_id"] for hit in found.hits("kiwi") if hit.metadata.get("message_id")}

    worker = WorkerProcess(env, tmp_path / "worker-killed.log", concurrency=2)
    try:
        worker.wait_ready()
        wait_for(lambda: len(indexed()) >= 3, 120, interval=0.05, message="a few messages searchable")
    finally:
        os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait(30)
        worker.stop()
    assert len(indexed()) < 30, "the worker was killed with messages in flight"

    worker = WorkerProcess(env, tmp_path / "worker-restarted.log", concurrency=2)
    try:
        worker.wait_ready()
        wait_for(lambda: len(indexed()) == 30, 180, message="all 30 messages searchable after the restart")
        with sqlite3.connect(broker_file) as connection:
            wait_for(
                lambda: connection.execute("SELECT count(*) FROM kombu_message").fetchone()[0] == 0,
                30,
                message="every message acknowledged and deleted",
            )
    finally:
        worker.stop()
    assert indexed() == {payload["message_id"] for payload in payloads}
