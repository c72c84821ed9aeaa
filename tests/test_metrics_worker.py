"""A real ``pi worker`` (prefork, 2 processes, beat, embedded broker) serving /metrics on ``PI_METRICS_PORT``.

Scraped while it vectorizes a Plane workspace and live-syncs an edit: the job shows running with progress, then
success; the documents, chunks, sink writes and tasks the pool processes counted reach the main process's
endpoint; freshness rises after an edit and falls back to 0 once the edit is searchable (a catch-up observed);
a pool process killed with SIGKILL has its live gauges swept at the next scrape; after the whole worker is
killed, the next start sweeps what it left (its counters still count), and a clean stop leaves no live gauge.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from pi_framework.celery_app import create_app
from pi_framework.db import get_database
from pi_framework.plane import schema
from pi_framework.plane.sample import sample_issue
from pi_framework.search import search
from pi_framework.sync.dispatch import LIVE_SYNC_TASK, VECTORIZE_TASK
from pi_framework.sync.jobs import Jobs
from pi_framework.worker_process import wait_for

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

pytestmark = pytest.mark.slow

ISSUES = 1500


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PiWorker:
    """``pi worker -c 2`` (worker + beat) in a subprocess, its log in a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pi_framework.cli", "worker", "-c", "2"],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"pi worker exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            return " ready." in self.log()

        wait_for(ready, 90, message=f"pi worker ready (log: {self.log_path})")

    def children(self) -> list[str]:
        return subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout.split()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._log.close()

    def stop(self) -> None:
        """SIGTERM to the main process only (a warm shutdown stops the pool processes, each running ``worker_stop``)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


class Endpoint:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"

    def scrape(self) -> dict[tuple[str, frozenset], float]:
        with urllib.request.urlopen(self.url, timeout=10) as reply:
            text = reply.read().decode()
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def value(self, name: str, **labels: str) -> float | None:
        return self.scrape().get((name, frozenset(labels.items())))


def test_pi_worker_endpoint_follows_a_vectorization_a_live_sync_and_its_processes(plane_db, plane_settings, pi_env, tmp_path):
    port = free_port()
    env = {
        "PI_DATA_DIR": str(tmp_path / "pi-data"),
        "PLANE_DATABASE_URL": plane_db.url,
        "CELERY_DEFAULT_QUEUE": f"pi_test_{uuid.uuid4().hex}",
        "PI_EMBEDDER": "hashing",
        "PI_EMBEDDING_BATCH_SIZE": "8",
        "CELERY_VECTOR_SYNC_INTERVAL": "2",
        "PI_REDISPATCH_INTERVAL": "2",
        "PI_METRICS_PORT": str(port),
        "HF_HUB_OFFLINE": "1",
    }
    settings = pi_env(**env)
    folder = tmp_path / "pi-data" / "metrics"
    workspace = plane_db.workspace()
    project = plane_db.project(workspace, identifier="WEB")
    plane_db.insert_many(
        schema.issues, [plane_db.issue_values(project, *sample_issue(n), sequence_id=n + 1) for n in range(ISSUES)]
    )
    workspace_id = workspace["id"]
    first_issue = plane_db.issue(project, "An issue to edit", "<p>plain words</p>")
    create_app()  # this process sends the vectorization through the same embedded broker and queue
    worker = PiWorker(env, tmp_path / "worker.log")
    endpoint = Endpoint(port)
    try:
        worker.wait_ready()
        assert wait_for(lambda: endpoint.value("pi_metrics_database_up") == 1, 30, message="the endpoint answers")
        assert endpoint.value("pi_jobs", status="running") == 0

        # ---- a vectorization: seen running with progress, then success
        Jobs(get_database(), settings).request(workspace_id)
        seen: list[tuple[float, float]] = []

        def done() -> bool:
            samples = endpoint.scrape()
            running = samples.get(("pi_jobs", frozenset({("status", "running")})), 0)
            ratio = samples.get(("pi_job_progress_ratio", frozenset({("workspace", workspace_id)})))
            if running and ratio is not None:
                seen.append((running, ratio))
            return samples.get(("pi_jobs", frozenset({("status", "success")}))) == 1

        wait_for(done, 180, 0.05, "the vectorization succeeded")
        assert any(0 < ratio < 1 for _, ratio in seen), f"never saw the job running part-way: {seen[:5]}"
        samples = endpoint.scrape()
        get = lambda name, **labels: samples.get((name, frozenset(labels.items())))  # noqa: E731
        assert get("pi_documents_total", outcome="indexed") >= ISSUES + 1
        assert get("pi_chunks_total", action="embedded") >= ISSUES + 1
        assert get("pi_embedded_texts_total") >= ISSUES + 1
        assert get("pi_sink_seconds_count", sink="embedded", operation="write") >= 1
        assert get("pi_tasks_total", task=VECTORIZE_TASK, state="SUCCESS") >= 1
        assert get("pi_live_sync_workspaces") == 1 and get("pi_jobs_documents_total") == 0  # no job active any more
        assert get("pi_db_breaker_state") == 0

        # ---- live sync: freshness rises after an edit, falls back to 0 once the edit is searchable
        # (a tick re-flags recently changed workspaces for its change scan's overlap and finds nothing pending: < 1 s)
        assert endpoint.value("pi_workspace_freshness_seconds", workspace=workspace_id) < 1
        plane_db.update(schema.issues, first_issue["id"], name="Quetzalcoatl migration plan")
        risen = wait_for(
            lambda: (
                (endpoint.value("pi_workspace_freshness_seconds", workspace=workspace_id) or 0) > 0
                and endpoint.value("pi_pending_changes") >= 1
            ),
            60,
            0.05,
            "freshness rising after the edit",
        )
        assert risen

        def caught_up() -> bool:
            fresh = endpoint.value("pi_workspace_freshness_seconds", workspace=workspace_id) == 0
            return fresh and bool(search("quetzalcoatl", workspace_id, mode="text", all_projects=True))

        wait_for(caught_up, 60, 0.1, "the edit searchable and freshness back to 0")
        samples = endpoint.scrape()
        assert samples[("pi_catchup_seconds_count", frozenset())] >= 1
        assert samples[("pi_tasks_total", frozenset({("task", LIVE_SYNC_TASK), ("state", "SUCCESS")}))] >= 1
        assert samples[("pi_freshness_max_seconds", frozenset())] < 1

        # ---- a pool process killed with SIGKILL: its live gauges are swept at the next scrape
        with_gauges = [int(pid) for pid in worker.children() if list(folder.glob(f"gauge_live*_{pid}.db"))]
        assert with_gauges, f"no pool process wrote live gauges: {sorted(p.name for p in folder.iterdir())}"
        victim = with_gauges[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: endpoint.scrape() and not list(folder.glob(f"gauge_live*_{victim}.db")), 30, 0.2, "swept")
        assert endpoint.value("pi_documents_total", outcome="indexed") >= ISSUES + 1  # what it counted still counts
    finally:
        worker.kill()  # the whole machine crashes: every process's live gauges stay behind
    assert list(folder.glob("gauge_live*"))

    # ---- the next start sweeps what the crashed run left; a clean stop leaves no live gauge
    worker = PiWorker(env, tmp_path / "worker-2.log")
    try:
        worker.wait_ready()
        samples = wait_for(endpoint.scrape, 30, message="the endpoint of the second run")
        assert samples[("pi_documents_total", frozenset({("outcome", "indexed")}))] >= ISSUES + 1  # counters survive
        alive = {worker.process.pid, *map(int, worker.children())}
        assert {int(path.stem.rsplit("_", 1)[1]) for path in folder.glob("gauge_live*")} <= alive
        wait_for(lambda: len(worker.children()) >= 2 and "redispatch_lost_jobs" in worker.log(), 30, message="pool busy")
    finally:
        worker.stop()
    # every process that stopped removed its live gauges; only one killed outright keeps them (Celery may SIGKILL a
    # pool process it was replacing), and the next sweep (the next start, any scrape) drops them
    killed = {int(pid) for pid in re.findall(r"pid:(\d+) exited with 'signal 9", worker.log())}
    left = {int(path.stem.rsplit("_", 1)[1]) for path in folder.glob("gauge_live*")}
    assert left <= killed, f"live gauges left after a clean stop: {sorted(p.name for p in folder.iterdir())}"
