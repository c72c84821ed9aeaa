"""Many workers, no double work (issue 14): three real workers on RabbitMQ (one with beat) share a few hundred
live-synced workspaces while edits arrive continuously, duplicate live-sync messages are sent on top, and two workers
are SIGKILLed (whole process group) in the middle of a live sync and restarted.

* no workspace is ever written by two runs at once: every live sync and vectorization is recorded by the test plugin
  ``pi_test_writers`` (tests/plugins/writers) from *inside* the workspace's write lease, with PostgreSQL's clock, and
  no two intervals of one workspace may overlap (a killed run's interval ends at its kill);
* every edit ends up searchable (the ledger holds each edited issue's last version, and search finds its last name);
* the killed workers lose nothing: the edits their syncs held are in the index after the restart.

Size: ``PI_MANY_WORKERS_WORKSPACES`` workspaces (default 300) and ``PI_MANY_WORKERS_SECONDS`` seconds of edits
(default 30) at about 8 edits a second. 300 is the size at which a tick still measures every changed workspace well
within the 1 s interval on 2 shared cores, while 3 workers x 2 processes all get work; the test takes about 1.5 to 2
minutes there, most of it worker start-up and the edit stream. Larger fleets are bench/scale.py's job.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import random
import signal
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from pi_framework import runtime
from pi_framework.db import get_database
from pi_framework.db.models import IndexedDocument
from pi_framework.pipeline.ledger import same_instant
from pi_framework.plane import reset_plane_engine
from pi_framework.search import search
from pi_framework.sync.dispatch import LIVE_SYNC_TASK, send_task
from pi_framework.worker_process import WorkerProcess, wait_for

pytestmark = pytest.mark.slow

WORKSPACES = int(os.environ.get("PI_MANY_WORKERS_WORKSPACES", "300"))
SECONDS = float(os.environ.get("PI_MANY_WORKERS_SECONDS", "30"))


def _fleet() -> Any:
    """bench/fleet.py (many vectorized workspaces built in bulk), shared with the benchmarks."""
    path = Path(__file__).resolve().parents[1] / "bench" / "fleet.py"
    spec = importlib.util.spec_from_file_location("pi_bench_fleet", path)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fleet = _fleet()


def runs() -> list[Any]:
    with get_database().engine.connect() as connection:
        return connection.execute(
            text("SELECT id, workspace_id, kind, holder, pid, started, ended FROM test_writer_runs ORDER BY started")
        ).all()


def overlaps(rows: list[Any], killed: dict[int, datetime], now: datetime | None = None) -> list[tuple[Any, Any]]:
    """Pairs of runs of one workspace whose intervals overlap. A run without an end ended when its process was killed;
    else it is still running at *now* (a snapshot), and without *now* that is an error."""
    by_workspace: dict[str, list[tuple[datetime, datetime, Any]]] = {}
    for row in rows:
        end = row.ended or killed.get(row.pid) or now
        assert end is not None, f"run {row} never ended, and its process {row.pid} was not killed"
        by_workspace.setdefault(row.workspace_id, []).append((row.started, end, row))
    found = []
    for intervals in by_workspace.values():
        intervals.sort(key=lambda interval: interval[0])
        latest_end, latest = intervals[0][1], intervals[0][2]
        for started, end, row in intervals[1:]:
            if started < latest_end:
                found.append((latest, row))
            if end > latest_end:
                latest_end, latest = end, row
    return found


def db_clock() -> datetime:
    with get_database().engine.connect() as connection:
        return connection.execute(text("SELECT clock_timestamp()")).scalar_one()


class Edits(threading.Thread):
    """Renames random issues of random workspaces at a steady pace until stopped; remembers each issue's last edit."""

    def __init__(self, plane, built, rate: float = 8.0) -> None:  # noqa: ANN001
        super().__init__(daemon=True)
        self.plane, self.built, self.rate = plane, built, rate
        self.rng = random.Random(14)
        self.stop = threading.Event()
        self.last: dict[str, tuple[str, str, datetime]] = {}  # issue -> (workspace, name, updated_at)
        self.count = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                workspace_id = self.rng.choice(self.built.workspaces)
                issue_id = self.rng.choice(self.built.issues[workspace_id])
                marker = f"okapi{self.count}x{uuid.uuid4().hex[:6]}"
                stamp = fleet.edit(self.plane, issue_id, marker)
                self.last[issue_id] = (workspace_id, marker, stamp)
                self.count += 1
                if self.count % 5 == 0:  # a duplicate message on top: the lease, not the trigger, must keep it single
                    send_task(LIVE_SYNC_TASK, workspace_id=workspace_id)
                self.stop.wait(self.rng.uniform(0.5, 1.5) / self.rate)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def index_lags(edits: Edits) -> list[str]:
    """Edited issues whose last version the ledger does not hold (yet)."""
    wanted = {f"issues:{issue_id}": stamp for issue_id, (_, _, stamp) in edits.last.items()}
    with get_database().session() as session:
        rows = session.execute(
            select(IndexedDocument.document_id, IndexedDocument.source_updated_at).where(
                IndexedDocument.document_id.in_(list(wanted))
            )
        ).all()
    held = {row.document_id for row in rows if same_instant(row.source_updated_at, wanted[row.document_id])}
    return sorted(set(wanted) - held)


def test_three_workers_never_write_one_workspace_at_once_and_lose_nothing(
    plane_db, postgres_url, rabbitmq_url, opensearch_url, with_test_plugins, tmp_path
):
    reset_plane_engine()
    prefix = f"many{uuid.uuid4().hex[:8]}"
    env = {
        "PI_DATA_DIR": str(tmp_path / "pi-data"),
        "PI_DATABASE_URL": postgres_url,
        "PLANE_DATABASE_URL": plane_db.url,
        "CELERY_BROKER_URL": rabbitmq_url,
        "CELERY_DEFAULT_QUEUE": f"pi_many_{uuid.uuid4().hex}",
        "PI_SINKS": "opensearch",
        "OPENSEARCH_URL": opensearch_url,
        "OPENSEARCH_INDEX_PREFIX": prefix,
        "PI_EMBEDDER": "hashing",
        "PI_LOAD_PLUGINS": "pi_issues,pi_pages,opensearch_sink,pi_test_writers",
        "CELERY_VECTOR_SYNC_INTERVAL": "1",
        "CELERY_VECTOR_SYNC_RETRY_DELAY": "1",
        "CELERY_VECTOR_SYNC_MAX_RETRIES": "20",
        "PI_LEASE_SECONDS": "3",
        "PI_TEST_RECORD_RUNS": "1",
        "PI_TEST_SLOW_SYNC": "0.3",
        "HF_HUB_OFFLINE": "1",
    }
    with_test_plugins(**env)
    built = fleet.build_workspaces(plane_db, WORKSPACES, issues=3, pages=1)
    fleet.mark_vectorized(built.workspaces)
    with get_database().engine.begin() as connection:
        connection.execute(text(importlib.import_module("pi_test_writers").TABLE))
    from pi_framework.celery_app import create_app

    create_app()  # this process sends the duplicate messages to the workers' queue

    workers: list[WorkerProcess] = []
    started = 0

    def start(beat: bool) -> WorkerProcess:
        nonlocal started
        started += 1
        worker = WorkerProcess(env, tmp_path / f"worker-{started}.log", beat=beat, concurrency=2)
        workers.append(worker)
        return worker

    killed: dict[int, datetime] = {}

    def kill_mid_sync(victim: WorkerProcess) -> None:
        """SIGKILL *victim*'s process group while one of its processes is inside a live sync."""
        pids = set(victim.child_pids())

        def syncing() -> bool:
            return any(row.ended is None and row.pid in pids and row.kind == "live sync" for row in runs())

        wait_for(syncing, 60, 0.02, "the victim inside a live sync")
        os.killpg(victim.process.pid, signal.SIGKILL)
        victim.process.wait()
        at = db_clock()
        killed.update(dict.fromkeys(pids, at))
        assert any(row.ended is None and row.pid in pids for row in runs()), "the kill landed inside a live sync"

    edits = Edits(plane_db, built)
    try:
        for worker in [start(beat=True), start(beat=False), start(beat=False)]:
            worker.wait_ready()
        edits.start()
        time.sleep(SECONDS / 3)  # the pace of the scenario: edits keep arriving meanwhile
        kill_mid_sync(workers[1])
        start(beat=False).wait_ready()
        time.sleep(SECONDS / 3)
        kill_mid_sync(workers[0])  # the one with beat: no tick until it is back
        start(beat=True).wait_ready()
        time.sleep(SECONDS / 3)
        edits.stop.set()
        edits.join(30)
        assert edits.error is None, edits.error
        double = overlaps(runs(), killed, now=db_clock())  # before waiting on anything: the sharpest check comes first
        assert not double, f"{len(double)} overlapping writers, e.g. {double[:3]}"
        converged_from = time.monotonic()
        wait_for(lambda: not index_lags(edits), 180, 0.5, "every edit in the ledger")
        converged = time.monotonic() - converged_from

        def searchable() -> list[str]:
            return [
                issue_id
                for issue_id, (workspace_id, marker, _) in edits.last.items()
                if not any(
                    hit.document_id == f"issues:{issue_id}"
                    for hit in search(marker, workspace_id, mode="text", all_projects=True)
                )
            ]

        wait_for(lambda: not searchable(), 60, 1.0, "every edit searchable")
        wait_for(lambda: all(row.ended or row.pid in killed for row in runs()), 30, 0.2, "every running sync to end")
        recorded = runs()
        cut = [row for row in recorded if row.ended is None]
        assert len(cut) >= 2 and all(row.pid in killed for row in cut), cut
        double = overlaps(recorded, killed)
        assert not double, f"{len(double)} overlapping writers, e.g. {double[:3]}"
        live = [row for row in recorded if row.kind == "live sync"]
        print(
            f"\nmany workers: {WORKSPACES} workspaces, {edits.count} edits ({len(edits.last)} issues) in {SECONDS:.0f} s, "
            f"{len(live)} live syncs by {len({row.pid for row in live})} processes, "
            f"{sum(row.kind == 'vectorization' for row in recorded)} vectorizations, 2 workers killed mid-sync, "
            f"0 overlaps; converged {converged:.1f} s after the last edit"
        )
    finally:
        edits.stop.set()
        for worker in workers:
            worker.stop()
        (sink,) = runtime.get_sinks()
        sink.client.indices.delete(index=f"{prefix}-*")


def test_overlap_detection_sees_two_writers_at_once() -> None:
    """The checker itself: touching intervals are fine, overlapping ones are caught, a killed run ends at its kill."""
    from collections import namedtuple

    Row = namedtuple("Row", "id workspace_id kind holder pid started ended")
    t = [datetime(2026, 1, 1, 0, 0, second) for second in range(10)]
    sequential = [Row(1, "w", "live sync", "a", 1, t[0], t[2]), Row(2, "w", "live sync", "b", 2, t[2], t[4])]
    assert overlaps(sequential, {}) == []
    crossing = [*sequential, Row(3, "w", "live sync", "c", 3, t[3], t[5])]
    assert [(a.id, b.id) for a, b in overlaps(crossing, {})] == [(2, 3)]
    killed_run = [Row(1, "w", "live sync", "a", 7, t[0], None), Row(2, "w", "live sync", "b", 2, t[4], t[5])]
    assert overlaps(killed_run, {7: t[3]}) == []
    assert len(overlaps(killed_run, {7: t[6]})) == 1
    running = [Row(1, "w", "live sync", "a", 1, t[0], None), Row(2, "w", "live sync", "b", 2, t[4], t[5])]
    assert overlaps(running, {}, now=t[3]) == [] and len(overlaps(running, {}, now=t[6])) == 1
    other_workspace = [Row(1, "w", "live sync", "a", 1, t[0], t[5]), Row(2, "v", "live sync", "b", 2, t[1], t[4])]
    assert overlaps(other_workspace, {}) == []
    with pytest.raises(AssertionError, match="never ended"):
        overlaps([Row(1, "w", "live sync", "a", 1, t[0], None)], {})
