"""A real Celery worker with beat, plugins installed as distributions, RabbitMQ and the embedded broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pi_framework.worker_process import WorkerProcess, wait_for


@pytest.fixture
def worker_env(with_test_plugins, tmp_path):
    """Environment for a worker subprocess: private queue, data dir and marker folder."""
    with_test_plugins()

    def make(**extra: str) -> dict[str, str]:
        env = {
            "PI_DATA_DIR": str(tmp_path / "pi-data"),
            "PI_TEST_MARKERS": str(tmp_path / "markers"),
            "CELERY_DEFAULT_QUEUE": f"pi_test_{uuid.uuid4().hex[:10]}",
            "PYTHONPATH": os.environ["PYTHONPATH"],
            **extra,
        }
        return env

    return make


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _start(env: dict[str, str], tmp_path: Path, **options) -> WorkerProcess:
    worker = WorkerProcess(env, tmp_path / f"worker-{uuid.uuid4().hex[:6]}.log", **options)
    worker.wait_ready()
    return worker


def _send(env: dict[str, str], task: str, *args: str) -> None:
    from celery import Celery

    app = Celery(broker=env.get("CELERY_BROKER_URL") or f"sqla+sqlite:///{env['PI_DATA_DIR']}/broker.sqlite")
    app.send_task(task, args=args, queue=env["CELERY_DEFAULT_QUEUE"])
    app.close()


def test_worker_with_beat_runs_plugin_tasks_and_beat_entries(worker_env, rabbitmq_url, tmp_path):
    env = worker_env(CELERY_BROKER_URL=rabbitmq_url)
    markers = Path(env["PI_TEST_MARKERS"])
    worker = _start(env, tmp_path, beat=True)
    try:
        _send(env, "pi.celery_app.test_beta_marker", "sent")
        wait_for(lambda: (markers / "beta-sent").exists(), 60, message="beta task sent by send_task ran")
        wait_for(lambda: _lines(markers / "alpha-beat") >= 2, 60, message="alpha beat entry fired twice")
        wait_for(lambda: _lines(markers / "beta-beat") >= 2, 60, message="beta beat entry fired twice")

        registered = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "pi_framework.celery_app", "inspect", "registered", "--json", "--timeout=10"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        names = {name for tasks in json.loads(registered.stdout.strip().splitlines()[-1]).values() for name in tasks}
        assert {"pi.celery_app.test_alpha_marker", "pi.celery_app.test_beta_marker"} <= names
    finally:
        worker.stop()
    assert "task finish pi.celery_app.test_beta_marker" in worker.log(), "one structured line per task"


def test_disabled_plugin_is_absent_from_worker_and_beat(worker_env, rabbitmq_url, tmp_path):
    env = worker_env(CELERY_BROKER_URL=rabbitmq_url, PI_DISABLE_PLUGINS="pi_test_beta")
    markers = Path(env["PI_TEST_MARKERS"])
    worker = _start(env, tmp_path, beat=True)
    try:
        wait_for(lambda: _lines(markers / "alpha-beat") >= 3, 60, message="alpha beat entry fired")
        _send(env, "pi.celery_app.test_beta_marker", "sent")
        wait_for(
            lambda: "Received unregistered task of type 'pi.celery_app.test_beta_marker'" in worker.log(),
            60,
            message="worker rejects the disabled plugin's task",
        )
    finally:
        worker.stop()
    assert not (markers / "beta-beat").exists() and not (markers / "beta-sent").exists()


def test_task_of_a_killed_worker_process_is_redelivered_and_completes(worker_env, rabbitmq_url, tmp_path):
    env = worker_env(CELERY_BROKER_URL=rabbitmq_url)
    markers = Path(env["PI_TEST_MARKERS"])
    worker = _start(env, tmp_path)
    try:
        _send(env, "pi.celery_app.test_alpha_die_once", "job")
        pid = int(
            wait_for(
                lambda: (markers / "job.started").exists() and (markers / "job.started").read_text(), 60, message="task started"
            )
        )
        os.kill(pid, signal.SIGKILL)
        done = wait_for(
            lambda: (markers / "job.done").exists() and (markers / "job.done").read_text(),
            90,
            message="task redelivered and completed",
        )
        assert int(done) != pid
    finally:
        worker.stop()


@pytest.mark.slow
def test_embedded_broker_needs_no_services(worker_env, tmp_path):
    env = worker_env()
    markers = Path(env["PI_TEST_MARKERS"])
    worker = _start(env, tmp_path, beat=True)
    try:
        _send(env, "pi.celery_app.test_beta_marker", "embedded")
        wait_for(lambda: (markers / "beta-embedded").exists(), 60, message="task ran on the SQLite broker")
        wait_for(lambda: _lines(markers / "alpha-beat") >= 2, 60, message="beat fired on the SQLite broker")
    finally:
        worker.stop()
    assert "CELERY_BROKER_URL is unset: using the embedded SQLite broker" in worker.log()


def test_two_pi_workers_on_one_host_run_side_by_side_with_their_own_names(worker_env, rabbitmq_url, tmp_path):
    """``pi worker -n``: a second worker of the same node name exits at start (RESOURCE_LOCKED on its pidbox queue);
    with names of their own both serve, and each answers a ping under its name."""
    env = {**os.environ, **worker_env(CELERY_BROKER_URL=rabbitmq_url)}
    names = [f"first-{uuid.uuid4().hex[:6]}@%h", f"second-{uuid.uuid4().hex[:6]}@%h"]
    workers, logs = [], []
    try:
        for name in names:
            log = open(tmp_path / f"{name.split('@')[0]}.log", "wb")  # noqa: SIM115 - closed below
            logs.append(log)
            command = [sys.executable, "-m", "pi_framework.cli", "worker", "-c", "1", "--no-beat", "-n", name]
            workers.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        for worker, log in zip(workers, logs, strict=True):
            path = Path(log.name)
            wait_for(lambda w=worker, p=path: w.poll() is None and " ready." in p.read_text(errors="replace"), 90, 0.5,
                     f"pi worker ready ({path})")
        from celery import Celery

        app = Celery(broker=rabbitmq_url)
        try:
            answered = wait_for(lambda: {name for reply in app.control.ping(timeout=2) for name in reply}, 30, 0.5, "pings")
        finally:
            app.close()
        host = os.uname().nodename
        assert {name.replace("%h", host) for name in names} <= answered
        assert all(worker.poll() is None for worker in workers), "both still running"
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(30)
        for log in logs:
            log.close()
