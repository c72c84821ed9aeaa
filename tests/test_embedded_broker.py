"""The embedded broker (pi_framework.broker): acknowledged messages are deleted, unacknowledged ones come back.

In-process tests drive the kombu transport directly; the worker tests run real workers on it and kill their
process group with SIGKILL, the way an OOM killer or a power cut would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
import uuid
from pathlib import Path
from queue import Empty

import pytest
from celery import Celery
from kombu import Connection, Exchange, Queue

from pi_framework import broker
from pi_framework.worker_process import WorkerProcess, wait_for

# ---------------------------------------------------------------------- the transport, in process


class BrokerFile:
    """A broker file: publish through plain kombu (as a chat service does), inspect rows with sqlite3."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqla+sqlite:///{path}"
        self.queue = Queue("q", Exchange("q"), routing_key="q")

    def connect(self, visibility_timeout: float = 60.0) -> Connection:
        return Connection(broker.embedded_url(self.url), transport_options={"visibility_timeout": visibility_timeout})

    def publish(self, *bodies: object) -> None:
        with Connection(self.url) as connection:  # kombu's own transport: what other producers use
            producer = connection.Producer()
            for body in bodies:
                producer.publish(body, exchange=self.queue.exchange, routing_key="q", declare=[self.queue])

    def rows(self) -> list[tuple[int, bool]]:
        """(id, visible) of every message row."""
        with sqlite3.connect(self.path) as connection:
            return [(row, bool(visible)) for row, visible in connection.execute("SELECT id, visible FROM kombu_message ORDER BY id")]


@pytest.fixture
def broker_file(tmp_path) -> BrokerFile:
    return BrokerFile(tmp_path / "broker.sqlite")


def test_ack_deletes_and_reject_deletes_or_requeues_the_same_row(broker_file):
    broker_file.publish("a", "b", "c")
    with broker_file.connect() as connection:
        channel = connection.channel()
        first = channel.basic_get("q")
        assert first.payload == "a" and broker_file.rows() == [(1, False), (2, True), (3, True)]
        first.ack()
        assert broker_file.rows() == [(2, True), (3, True)], "an acknowledged message is deleted"

        second = channel.basic_get("q")
        second.reject(requeue=True)
        assert broker_file.rows() == [(2, True), (3, True)], "requeued: visible again, no copy"
        assert channel.basic_get("q").payload == "b", "a requeued message keeps its place"
        third = channel.basic_get("q")
        third.reject(requeue=False)
        assert broker_file.rows() == [(2, False)], "rejected without requeue: deleted"


def test_unacknowledged_messages_come_back_on_close_and_after_the_timeout(broker_file):
    broker_file.publish("a", "b")
    with broker_file.connect(visibility_timeout=1.0) as owner:
        channel = owner.channel()
        held = channel.basic_get("q")
        assert held.payload == "a"
        with broker_file.connect(visibility_timeout=1.0) as other:
            other_channel = other.channel()
            assert other_channel.basic_get("q").payload == "b"
            assert other_channel.basic_get("q") is None, "a held message is invisible"
        assert broker_file.rows() == [(1, False), (2, True)], "closing a channel restores its unacked message"

        with broker_file.connect(visibility_timeout=1.0) as other:
            other_channel = other.channel()
            assert other_channel.basic_get("q").payload == "b"
            redelivered = wait_for(lambda: other_channel.basic_get("q"), 10, interval=0.2, message="expired claim")
            assert redelivered.payload == "a", "a message unacknowledged past the timeout is delivered again"
            redelivered.ack()
        held.ack()  # late ack of the first holder: the row is gone already, nothing breaks
        channel.close()  # nothing of "a" is restored: the owner's claim was taken over
    assert broker_file.rows() == [(2, True)]


def test_a_live_consumer_renews_its_claims(broker_file):
    broker_file.publish("long task")
    with broker_file.connect(visibility_timeout=1.0) as owner, broker_file.connect(visibility_timeout=1.0) as other:
        channel, other_channel = owner.channel(), other.channel()
        held = channel.basic_get("q")
        until = time.monotonic() + 3.0  # three timeouts, the owner polling (and renewing) as a worker does
        while time.monotonic() < until:
            with contextlib.suppress(Empty):
                channel.drain_events(timeout=0)
            assert other_channel.basic_get("q") is None, "a message its live consumer holds is not delivered again"
            time.sleep(0.1)
        # the owner stops polling (a solo worker busy with the task): its claim expires
        redelivered = wait_for(lambda: other_channel.basic_get("q"), 10, interval=0.2, message="claim expired")
        assert redelivered.payload == "long task"
        redelivered.ack()
        held.ack()
    assert broker_file.rows() == []


def test_rows_left_by_kombus_transport_are_deleted_when_the_broker_opens(broker_file):
    broker_file.publish("acked long ago", "pending")
    with Connection(broker_file.url) as plain:  # kombu's transport hides what it delivers, and keeps it
        plain.channel().basic_get("q").ack()
    assert broker_file.rows() == [(1, False), (2, True)]
    with broker_file.connect() as connection:
        message = connection.channel().basic_get("q")
        assert message.payload == "pending"
        message.ack()
    assert broker_file.rows() == []
