"""The embedded broker (pi_framework.broker): acknowledged messages are deleted, unacknowledged ones come back.

In-process tests drive the kombu transport directly; the worker tests run real workers on it and kill their
process group with SIGKILL, the way an OOM killer or a power cut would.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
import uuid
from pathlib import Path

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
            return [
                (row, bool(visible)) for row, visible in connection.execute("SELECT id, visible FROM kombu_message ORDER BY id")
            ]


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


def _renewers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "pi-broker-renew"]


def test_unacknowledged_messages_come_back_on_close_and_after_the_timeout(broker_file, monkeypatch):
    broker_file.publish("a", "b")
    with broker_file.connect(visibility_timeout=1.0) as owner:
        channel = owner.channel()
        monkeypatch.setattr(channel, "renew_claims", lambda: 0)  # a holder that stopped renewing: frozen, or gone
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


@pytest.mark.slow
def test_a_live_connection_renews_its_claims_without_polling(broker_file):
    broker_file.publish("long task", "prefetched")
    timeout = 1.0
    wait_for(lambda: not _renewers(), 10, interval=0.05, message="no renewal thread left by an earlier test")
    with broker_file.connect(visibility_timeout=timeout) as owner, broker_file.connect(visibility_timeout=timeout) as other:
        channel, other_channel = owner.channel(), other.channel()
        running, prefetched = channel.basic_get("q"), channel.basic_get("q")
        assert len(_renewers()) == 1, "one renewal thread per connection"
        # three timeouts in which the owner never polls (a solo worker running the task): its thread renews both
        until = time.monotonic() + 3 * timeout
        while time.monotonic() < until:
            assert other_channel.basic_get("q") is None, "a message its live connection holds is not delivered again"
            with sqlite3.connect(broker_file.path) as connection:
                ages = [time.time() - fetched for (fetched,) in connection.execute("SELECT pi_fetched_at FROM kombu_message")]
            assert len(ages) == 2 and max(ages) < timeout, f"claims renewed every quarter of the timeout: ages {ages}"
            time.sleep(0.05)
        running.ack()
        prefetched.ack()
        assert broker_file.rows() == []
        wait_for(lambda: not _renewers(), 10, interval=0.05, message="the renewal thread ends once nothing is held")

        broker_file.publish("again")
        assert channel.basic_get("q").payload == "again"
        assert len(_renewers()) == 1, "the next claim starts a renewal thread again"
    wait_for(lambda: not _renewers(), 10, interval=0.05, message="closing the connection ends its renewal thread")
    assert broker_file.rows() == [(3, True)], "closing restored the unacknowledged message"


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


# ---------------------------------------------------------------------- real workers

VISIBILITY_TIMEOUT = 3


@pytest.fixture
def worker_env(with_test_plugins, tmp_path):
    """Environment of a worker on the embedded broker: private data dir, queue and marker folder, a short timeout."""
    with_test_plugins()
    (tmp_path / "pi-data").mkdir(exist_ok=True)
    return {
        "PI_DATA_DIR": str(tmp_path / "pi-data"),
        "PI_TEST_MARKERS": str(tmp_path / "markers"),
        "CELERY_DEFAULT_QUEUE": f"pi_test_{uuid.uuid4().hex[:10]}",
        "PI_EMBEDDED_BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
        "PYTHONPATH": os.environ["PYTHONPATH"],
    }


def _send(env: dict[str, str], task: str, *args: object, times: int = 1, countdown: float | None = None) -> None:
    """Publish like a service outside pi does: plain Celery on kombu's own ``sqla+sqlite`` transport."""
    app = Celery(broker=f"sqla+sqlite:///{env['PI_DATA_DIR']}/broker.sqlite")
    for _ in range(times):
        app.send_task(task, args=args, queue=env["CELERY_DEFAULT_QUEUE"], countdown=countdown)
    app.close()


def _claims(env: dict[str, str]) -> list[tuple[int, str | None, float | None]]:
    """(id, claim token, fetch time) of every message row."""
    with sqlite3.connect(Path(env["PI_DATA_DIR"]) / "broker.sqlite") as connection:
        return connection.execute("SELECT id, pi_claim, pi_fetched_at FROM kombu_message ORDER BY id").fetchall()


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _worker(env: dict[str, str], tmp_path: Path, concurrency: int = 1, pool: str = "prefork") -> WorkerProcess:
    worker = WorkerProcess(env, tmp_path / f"worker-{uuid.uuid4().hex[:6]}.log", concurrency=concurrency, pool=pool)
    worker.wait_ready()
    return worker


def _kill_group(worker: WorkerProcess) -> None:
    os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait(30)
    worker.stop()


@pytest.mark.slow
def test_acknowledged_messages_are_deleted(worker_env, tmp_path):
    _send(worker_env, "pi.celery_app.test_alpha_marker", "acked", times=20)  # kombu's transport creates the table
    with sqlite3.connect(Path(worker_env["PI_DATA_DIR"]) / "broker.sqlite") as connection:
        assert connection.execute("SELECT count(*) FROM kombu_message").fetchone()[0] == 20
    worker = _worker(worker_env, tmp_path)
    try:
        wait_for(lambda: _lines(Path(worker_env["PI_TEST_MARKERS"]) / "acked") == 20, 60, message="20 tasks ran")
        wait_for(lambda: _claims(worker_env) == [], 30, message="the broker table is empty again")
    finally:
        worker.stop()


@pytest.mark.slow
def test_tasks_of_a_killed_worker_group_run_after_a_restart(worker_env, tmp_path):
    markers = Path(worker_env["PI_TEST_MARKERS"])
    _send(worker_env, "pi.celery_app.test_alpha_die_once", "a")
    _send(worker_env, "pi.celery_app.test_alpha_die_once", "b")
    _send(worker_env, "pi.celery_app.test_alpha_marker", "queued", times=10)
    worker = _worker(worker_env, tmp_path, concurrency=2)
    try:
        wait_for(lambda: (markers / "a.started").exists() and (markers / "b.started").exists(), 60, message="both tasks run")
        held = {row: (token, fetched) for row, token, fetched in _claims(worker_env) if token}
        assert len(held) == 2
        # the live worker renews its claims: past the timeout both are still its own, delivered once
        wait_for(
            lambda: all(
                token == held[row][0] and fetched > held[row][1] + VISIBILITY_TIMEOUT
                for row, token, fetched in _claims(worker_env)
                if row in held
            ),
            30,
            interval=0.2,
            message="claims renewed past the visibility timeout",
        )
        assert not (markers / "a.done").exists() and not (markers / "b.done").exists()
    finally:
        _kill_group(worker)

    worker = _worker(worker_env, tmp_path, concurrency=2)
    try:
        wait_for(
            lambda: (markers / "a.done").exists() and (markers / "b.done").exists(), 60, message="both tasks delivered again"
        )
        wait_for(lambda: _lines(markers / "queued") == 10, 60, message="the queued tasks ran")
        wait_for(lambda: _claims(worker_env) == [], 30, message="every message acknowledged and deleted")
    finally:
        worker.stop()
    assert _lines(markers / "queued") == 10, "nothing ran twice"


@pytest.mark.slow
def test_the_task_of_a_killed_pool_process_is_requeued_at_once(worker_env, tmp_path):
    env = {**worker_env, "PI_EMBEDDED_BROKER_VISIBILITY_TIMEOUT": "3600"}  # no help from the timeout
    markers = Path(env["PI_TEST_MARKERS"])
    worker = _worker(env, tmp_path)
    try:
        _send(env, "pi.celery_app.test_alpha_die_once", "job")
        pid = int(wait_for(lambda: (markers / "job.started").exists() and (markers / "job.started").read_text(), 60))
        os.kill(pid, signal.SIGKILL)  # reject_on_worker_lost: the worker requeues the message, the same row
        done = wait_for(lambda: (markers / "job.done").exists() and (markers / "job.done").read_text(), 60, message="redelivered")
        assert int(done) != pid
        wait_for(lambda: _claims(env) == [], 30, message="acknowledged and deleted")
    finally:
        worker.stop()


SLEEPER = """
import os, time
from pathlib import Path

from pi_framework import hookimpl


def sleep(name, seconds):
    markers = Path(os.environ["PI_TEST_MARKERS"])
    markers.mkdir(parents=True, exist_ok=True)
    with open(markers / f"{name}.started", "a") as handle:
        handle.write(f"{os.getpid()}\\n")
    time.sleep(seconds)
    with open(markers / f"{name}.done", "a") as handle:
        handle.write(f"{os.getpid()}\\n")


@hookimpl
def register_tasks(register):
    register(sleep, name="pi.celery_app.test_sleeper_sleep")
"""


@pytest.fixture
def sleeper_env(worker_env, tmp_path):
    """``worker_env`` plus a plugin whose task records each start, sleeps as long as it is told and records its end."""
    site = tmp_path / "sleeper-site"
    (site / "pi_test_sleeper-1.0.dist-info").mkdir(parents=True)
    (site / "pi_test_sleeper.py").write_text(SLEEPER)
    (site / "pi_test_sleeper-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: pi-test-sleeper\nVersion: 1.0\n"
    )
    (site / "pi_test_sleeper-1.0.dist-info" / "entry_points.txt").write_text(
        "[pi_framework]\npi_test_sleeper = pi_test_sleeper\n"
    )
    return {**worker_env, "PYTHONPATH": os.pathsep.join([str(site), worker_env["PYTHONPATH"]])}


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_messages_a_live_worker_holds_past_the_timeout_are_delivered_once(sleeper_env, tmp_path, pool):
    """A task running four timeouts, and a message held for its ETA as long, run once: their live worker renews both.

    A spare worker polls the queue while the long task runs: a claim that expired would be its (or, with prefork,
    the first worker's own: its ETA message leaves it a free slot).
    """
    env, markers = sleeper_env, Path(sleeper_env["PI_TEST_MARKERS"])
    long = 4 * VISIBILITY_TIMEOUT
    worker = _worker(env, tmp_path, concurrency=2, pool=pool)
    spare = None
    try:
        _send(env, "pi.celery_app.test_alpha_marker", "eta", countdown=long)  # fetched at once, started after `long` s
        wait_for(lambda: [token for _, token, _ in _claims(env) if token], 30, interval=0.05, message="ETA message held")
        _send(env, "pi.celery_app.test_sleeper_sleep", "long", long)
        wait_for(lambda: (markers / "long.started").exists(), 60, interval=0.05, message="the long task runs")
        held = {row: (token, fetched) for row, token, fetched in _claims(env)}
        assert len(held) == 2 and all(token for token, _ in held.values()), held
        spare = WorkerProcess(env, tmp_path / "worker-spare.log")

        def renewed() -> bool:
            claims = {row: (token, fetched) for row, token, fetched in _claims(env)}
            assert set(claims) == set(held), "a message of a live worker was acknowledged before its claim was renewed"
            return all(
                claims[row][0] == token and claims[row][1] > fetched + VISIBILITY_TIMEOUT
                for row, (token, fetched) in held.items()
            )

        wait_for(renewed, 30, interval=0.1, message="both claims renewed past the visibility timeout", fatal=AssertionError)
        spare.wait_ready()
        assert not (markers / "long.done").exists(), "the spare worker polls while the long task still runs"
        wait_for(lambda: (markers / "long.done").exists() and (markers / "eta").exists(), 60, message="both tasks ran")
        wait_for(lambda: _claims(env) == [], 30, message="both messages acknowledged and deleted")
    finally:
        if spare is not None:
            spare.stop()
        worker.stop()
    assert _lines(markers / "long.started") == 1, "the long task was delivered once"
    assert _lines(markers / "eta") == 1, "the ETA message was delivered once"
    received = (worker.log() + spare.log()).count(" received")
    assert received == 2, f"{received} deliveries of 2 messages"
