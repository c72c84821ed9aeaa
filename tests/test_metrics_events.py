"""Celery task events (``PI_TASK_EVENTS=1``, as ``celery worker -E``) on RabbitMQ, as ``celery events`` and Flower see them.

A real worker runs ``index_chat_message``; an ``app.events.Receiver`` captures the events. Task-received and
task-succeeded events arrive with the ids of the message and never its text or its chat's title: the worker
rebuilds the argument strings itself (``pi_framework.events.RedactingRequest``), whatever the sender passed. A
sender that emits task-sent events passes redacted strings (``redacted_reprs``) so its events are clean too.
"""

from __future__ import annotations

import json
import os
import threading
import uuid

import pytest
from celery import Celery

from pi_framework.celery_app import create_app
from pi_framework.events import redacted_reprs
from pi_framework.worker_process import WorkerProcess, wait_for

pytestmark = pytest.mark.slow

INDEX = "pi.celery_app.index_chat_message"
TEXT = "Quokka ultramarine confidential 4711"
TITLE = "Zebra secret title 0815"
FIELDS = ("workspace_id", "chat_id", "message_id", "user_id", "role", "text", "created_at", "title")


def message(number: int) -> dict[str, str]:
    return {
        "workspace_id": "ws-events",
        "chat_id": "chat-1",
        "message_id": f"m-{number}",
        "user_id": "u-1",
        "role": "user",
        "text": f"{TEXT} number {number}",
        "created_at": "2026-01-02T03:04:05+00:00",
        "title": TITLE,
    }


def test_task_events_show_chat_tasks_with_their_ids_and_without_their_text(pi_env, rabbitmq_url, tmp_path):
    queue = f"pi_test_{uuid.uuid4().hex[:10]}"
    env = {"CELERY_BROKER_URL": rabbitmq_url, "CELERY_DEFAULT_QUEUE": queue, "PI_EMBEDDER": "hashing", "PI_TASK_EVENTS": "1"}
    settings = pi_env(**env)
    monitor = create_app(settings)  # what `celery -A pi_framework.celery_app events` runs
    events: list[dict] = []
    receivers: list = []

    def capture() -> None:
        with monitor.connection_for_read() as connection:
            receiver = monitor.events.Receiver(connection, handlers={"*": events.append})
            receivers.append(receiver)
            receiver.capture(limit=None, timeout=None, wakeup=False)

    thread = threading.Thread(target=capture, daemon=True)
    thread.start()
    wait_for(lambda: receivers, 30, message="the event receiver")
    mine = f"pi-test-{os.getpid()}-"  # WorkerProcess names its workers so
    worker = WorkerProcess({**env, "PI_DATA_DIR": str(settings.data_dir), "HF_HUB_OFFLINE": "1"}, tmp_path / "worker.log")
    careless = Celery(broker=rabbitmq_url)  # a chat service that passes no argument strings and sends no task-sent events
    careful = Celery(broker=rabbitmq_url)  # one that sends task-sent events, with the strings the README asks for
    careful.conf.task_send_sent_event = True
    try:
        worker.wait_ready()
        wait_for(
            lambda: any(e["type"] == "worker-online" and e.get("hostname", "").startswith(mine) for e in list(events)),
            60,
            message="the worker's own events (the receiver is bound)",
        )
        by_keywords = careless.send_task(INDEX, kwargs=message(1), queue=queue)
        positional = [message(2)[field] for field in FIELDS]
        by_position = careless.send_task(INDEX, args=positional, queue=queue)
        sent = careful.send_task(
            INDEX, kwargs=message(3), queue=queue, **redacted_reprs(kwargs=message(3), hide=("text", "title"), names=FIELDS)
        )
        ids = {by_keywords.id, by_position.id, sent.id}

        def seen() -> dict[str, set[str]]:
            kinds: dict[str, set[str]] = {}
            for event in list(events):
                if event.get("uuid") in ids:
                    kinds.setdefault(event["uuid"], set()).add(event["type"])
            done = all({"task-received", "task-succeeded"} <= kinds.get(task_id, set()) for task_id in ids)
            return kinds if done else {}

        kinds = wait_for(seen, 90, 0.2, "task-received and task-succeeded of the three messages")
        assert "task-sent" in kinds[sent.id]
    finally:
        for receiver in receivers:
            receiver.should_stop = True
        worker.stop()
        careless.close()
        careful.close()
    ours = [event for event in events if event.get("uuid") in ids]
    shown = json.dumps(ours)
    assert TEXT not in shown and TITLE not in shown, "message text or chat title in a task event"
    received = {event["uuid"]: event for event in ours if event["type"] == "task-received"}
    assert received[by_keywords.id]["name"] == INDEX
    assert "'message_id': 'm-1'" in received[by_keywords.id]["kwargs"] and "'text': '***'" in received[by_keywords.id]["kwargs"]
    assert "'m-2'" in received[by_position.id]["args"] and "'***'" in received[by_position.id]["args"]
    task_sent = next(event for event in ours if event["type"] == "task-sent")
    assert "'message_id': 'm-3'" in task_sent["kwargs"] and "'title': '***'" in task_sent["kwargs"]
    succeeded = [event for event in ours if event["type"] == "task-succeeded"]
    assert len(succeeded) == 3 and all("'failed': 0" in event["result"] for event in succeeded)
    assert TEXT not in worker.log() and TITLE not in worker.log()
