"""Health: the ``jobs`` check, the database-down case, and the ``health_check`` task through a real worker."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest

from pi_framework import runtime
from pi_framework.celery_app import create_app
from pi_framework.db.models import JobStatus
from pi_framework.health import run_health_checks
from pi_framework.worker_process import WorkerProcess


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/pi"


def test_jobs_check_counts_jobs_by_status(pi_db, add_job):
    add_job("ws-a", JobStatus.RUNNING, started=timedelta(hours=2), heartbeat=timedelta(hours=1))
    add_job("ws-b", JobStatus.RUNNING, started=timedelta(minutes=1), heartbeat=timedelta(seconds=5))
    add_job("ws-c", JobStatus.SUCCESS)
    check = runtime.get_registry().health_checks["jobs"].run()
    assert check["by_status"] == {"running": 2, "success": 1}
    assert check["silent_active"] == 1, "one running job is silent beyond PI_HEARTBEAT_TIMEOUT_SECONDS"
    assert check["oldest_active_progress"] is not None


def test_database_down_is_reported_with_the_breaker_open_and_nothing_crashes(pi_env):
    pi_env(PI_DATABASE_URL=_closed_port_url(), PI_DB_BREAKER_THRESHOLD=3, PI_DB_BREAKER_COOLDOWN=600)
    registry = runtime.get_registry()
    reports = [run_health_checks(registry) for _ in range(3)]
    last = reports[-1]
    assert not last["ok"]
    assert last["checks"]["database"]["ok"] is False
    assert last["checks"]["database"]["breaker"]["state"] == "open"
    assert "open" in last["checks"]["jobs"]["error"], "with the breaker open the jobs check fails fast"
    assert last["checks"]["database"]["seconds"] < 1 and last["checks"]["jobs"]["seconds"] < 1
    json.dumps(last)  # the task's report is plain JSON


@pytest.mark.slow
def test_pi_health_exits_non_zero_when_the_database_is_down(pi_env):
    pi_env(PI_DATABASE_URL=_closed_port_url())
    result = subprocess.run(
        [sys.executable, "-m", "pi_framework.manage", "health", "--json"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["checks"]["database"]["ok"] is False and "unreachable" in report["checks"]["database"]["error"]
    assert report["checks"]["jobs"]["ok"] is False


@pytest.mark.slow
def test_health_check_task_returns_the_report_through_a_worker(pi_env, postgres_url, rabbitmq_url, tmp_path):
    env = {
        "PI_DATA_DIR": str(tmp_path / "worker-data"),
        "PI_DATABASE_URL": postgres_url,
        "CELERY_BROKER_URL": rabbitmq_url,
        "CELERY_RESULT_BACKEND": "rpc://",
        "CELERY_DEFAULT_QUEUE": f"pi_test_{uuid.uuid4().hex}",
        "HF_HUB_OFFLINE": "1",
    }
    app = create_app(pi_env(**env))
    worker = WorkerProcess(env, tmp_path / "worker.log", pool="solo")
    try:
        worker.wait_ready()
        report = app.send_task("pi.celery_app.health_check").get(timeout=120)
    finally:
        worker.stop()
    assert report["checks"]["database"]["ok"] is True, report["checks"]["database"]
    assert report["checks"]["database"]["breaker"]["state"] == "closed"
    assert report["checks"]["broker"]["ok"] is True
    assert report["checks"]["jobs"]["by_status"] == {}
    assert {"pi_maintenance", "core_health"} <= set(report["plugins"]["loaded"])
    assert "reap-stuck-vectorization-jobs" in report["checks"]["beat"]["entries"]
