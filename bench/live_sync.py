"""Benchmarks of workspace vectorization and live sync on Plane's real schema (prints figures; not a test).

    python bench/live_sync.py                    # everything (about 10 minutes on 2 cores)
    python bench/live_sync.py --only noop        # one part: noop | latency | vectorize
    PI_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres   (else PI_TEST_POSTGRES_URL, else that default;
                                                                          scratch databases: bench/fleet.py)

1. noop: a live-sync tick with nothing changed (``trigger`` + ``live_sync``, the code the two tasks
   run; a quiet ``trigger`` queues nothing and reads no workspace, the sync is run anyway) for a workspace of
   1,000 and of 50,000 issues; the ratio (target <= 2). Then the same 50,000 with an index on
   ``issues (workspace_id, updated_at)``, which real Plane does not have. Many workspaces: bench/scale.py.
2. latency: a worker with beat on the embedded defaults (SQLite broker and PI database, embedded sink,
   fastembed), ``CELERY_VECTOR_SYNC_INTERVAL=2``; an issue is edited and the time until search finds
   the new text is measured, 15 times (target p50 <= interval + 1 s).
3. vectorize: ``vectorize`` of a 10,000-issue workspace versus fastembed alone on the same texts
   (docs/s), and the peak RSS of each, each in a fresh subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fleet import PLUGINS, configure, mark_vectorized, scratch_plane  # noqa: E402 - bench/fleet.py, shared with scale.py
from sqlalchemy import text  # noqa: E402

from pi_framework import runtime  # noqa: E402
from pi_framework.db import get_database  # noqa: E402
from pi_framework.db.models import JobStatus, utcnow  # noqa: E402
from pi_framework.plane import schema  # noqa: E402
from pi_framework.plane.sample import PlaneFactory, sample_issue  # noqa: E402
from pi_framework.settings import get_settings  # noqa: E402


def seed(plane: PlaneFactory, issues: int, projects: int = 10) -> str:
    """A workspace with *issues* realistic issues edited over the past year (rows inserted in bulk)."""
    workspace = plane.workspace()
    rng = random.Random(issues)
    now = utcnow()
    per_project = -(-issues // projects)
    created = 0
    for p in range(projects):
        project = plane.project(workspace, identifier=f"P{p}", name=f"Project {p}")
        state = plane.state(project, "started")
        rows = []
        for sequence in range(1, min(per_project, issues - created) + 1):
            name, html = sample_issue(created)
            stamp = now - timedelta(days=rng.uniform(1, 365))
            rows.append(plane.issue_values(project, name, html, state, sequence_id=sequence, now=stamp))
            created += 1
            if len(rows) == 5000:
                plane.insert_many(schema.issues, rows)
                rows = []
        if rows:
            plane.insert_many(schema.issues, rows)
    with plane.engine.begin() as connection:
        connection.execute(text("ANALYZE"))
    return workspace["id"]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------- 1. no-op tick
def tick_seconds(workspace_id: str, runs: int = 15) -> float:
    from pi_framework.sync import live, trigger

    def tick() -> float:
        start = time.perf_counter()
        counts = trigger.trigger()
        result = live.live_sync(workspace_id)
        assert counts["dispatched"] == 0 and result["documents_seen"] == 0, (counts, result)
        return time.perf_counter() - start

    tick()
    return statistics.median(tick() for _ in range(runs))


def scan_seconds(workspace_id: str, runs: int = 15) -> float:
    """One change scan of the issues source (its three watched tables) with nothing changed."""
    from pi_framework.sync import state

    source = runtime.get_registry().sources["issues"]
    cursor = state.load("issues", workspace_id)

    def scan() -> float:
        start = time.perf_counter()
        assert not list(source.changes(workspace_id, cursor).documents)
        return time.perf_counter() - start

    scan()
    return statistics.median(scan() for _ in range(runs))


def bench_noop() -> None:
    print("1. no-op live-sync tick (trigger_live_sync + process_workspace_live_sync, nothing changed), median of 15")
    figures = {}
    with tempfile.TemporaryDirectory() as data:
        for size in (1_000, 50_000):
            with scratch_plane() as plane:
                workspace_id = seed(plane, size)
                configure(
                    PI_DATA_DIR=f"{data}/{size}", PLANE_DATABASE_URL=plane.url, PI_EMBEDDER="hashing", PI_LOAD_PLUGINS=PLUGINS
                )
                mark_vectorized([workspace_id])
                figures[size] = tick_seconds(workspace_id)
                print(
                    f"   {size:>6} issues: tick {figures[size] * 1000:6.1f} ms, of which one issues scan "
                    f"{scan_seconds(workspace_id) * 1000:5.1f} ms (a quiet trigger reads no workspace: only the sync scans)"
                )
                if size == 50_000:
                    with plane.engine.begin() as connection:
                        connection.execute(text("CREATE INDEX bench_issues_ws_updated ON issues (workspace_id, updated_at)"))
                        connection.execute(text("ANALYZE issues"))
                    print(
                        f"   {size:>6} issues with an index on issues (workspace_id, updated_at), which Plane lacks: "
                        f"tick {tick_seconds(workspace_id) * 1000:6.1f} ms, issues scan {scan_seconds(workspace_id) * 1000:5.1f} ms"
                    )
    print(f"   ratio 50k / 1k: {figures[50_000] / figures[1_000]:.2f} (target <= 2)")


# ---------------------------------------------------------------------- 2. change-to-searchable latency
def bench_latency(edits: int = 15, interval: int = 2) -> None:
    from pi_framework.celery_app import create_app
    from pi_framework.search import search
    from pi_framework.sync import vectorize
    from pi_framework.sync.jobs import Jobs
    from pi_framework.worker_process import WorkerProcess, wait_for

    print(f"2. change-to-searchable latency, CELERY_VECTOR_SYNC_INTERVAL={interval}, embedded defaults, fastembed")
    with tempfile.TemporaryDirectory() as data, scratch_plane() as plane:
        workspace_id = seed(plane, 1_000)
        env = configure(
            PI_DATA_DIR=data,
            PLANE_DATABASE_URL=plane.url,
            CELERY_VECTOR_SYNC_INTERVAL=str(interval),
            CELERY_DEFAULT_QUEUE=f"pi_bench_{uuid.uuid4().hex[:8]}",
            PI_EMBEDDER="fastembed",
            PI_LOAD_PLUGINS=PLUGINS,
        )
        create_app()
        worker = WorkerProcess({**os.environ, **env}, Path(data) / "worker.log", beat=True, concurrency=2)
        try:
            worker.wait_ready()
            start = time.perf_counter()
            vectorize.request_vectorization(workspace_id)
            jobs = Jobs(get_database(), get_settings())
            wait_for(lambda: jobs.latest(workspace_id).status == JobStatus.SUCCESS, 900, 0.5, "vectorization")
            print(f"   (1,000 issues vectorized by the worker in {time.perf_counter() - start:.1f} s)")
            with plane.engine.connect() as connection:
                ids = [row.id for row in connection.execute(schema.issues.select().limit(edits))]
            rng = random.Random(7)
            latencies = []
            for n, issue_id in enumerate(ids):
                time.sleep(rng.uniform(0, interval))  # edits land at any phase of the beat interval
                marker = f"zebracorn{n}quux"
                plane.update(schema.issues, issue_id, name=f"Renamed {marker}")
                edited = time.perf_counter()
                wait_for(
                    lambda marker=marker: search(marker, workspace_id, mode="text", all_projects=True),
                    120,
                    0.05,
                    "the edit searchable",
                )
                latencies.append(time.perf_counter() - edited)
        finally:
            worker.stop()
    latencies.sort()
    p50, p90 = statistics.median(latencies), latencies[int(len(latencies) * 0.9) - 1]
    print(f"   {edits} edits: p50 {p50:.2f} s, p90 {p90:.2f} s, max {latencies[-1]:.2f} s (target p50 <= {interval + 1} s)")


# ---------------------------------------------------------------------- 3. full vectorization
def _child(mode: str, url: str, workspace_id: str, data: str) -> None:
    """Runs in a fresh process: ``pipeline`` (vectorize) or ``raw`` (fastembed alone on the same texts)."""
    configure(PI_DATA_DIR=data, PLANE_DATABASE_URL=url, PI_EMBEDDER="fastembed", PI_LOAD_PLUGINS=PLUGINS)
    embedder = runtime.get_embedder()
    embedder.embed(["warm up"])  # model load is not part of either figure
    start = time.perf_counter()
    if mode == "pipeline":
        from pi_framework.sync import vectorize

        result = vectorize.vectorize(workspace_id)
        documents = result["documents_indexed"]
        assert result["status"] == "success", result
    else:
        from pi_issues import IssuesSource

        from pi_framework.pipeline.normalise import normalise

        texts = [
            f"{doc.title}\n{normalise(doc.body, 'html')}" for doc in IssuesSource(get_settings()).iter_documents(workspace_id)
        ]
        start = time.perf_counter()  # reading the texts is not fastembed's work
        batch = get_settings().PI_EMBEDDING_BATCH_SIZE
        for offset in range(0, len(texts), batch):
            embedder.embed(texts[offset : offset + batch])
        documents = len(texts)
    seconds = time.perf_counter() - start
    print(json.dumps({"documents": documents, "seconds": seconds, "rss_mb": rss_mb()}))


def bench_vectorize(size: int = 10_000) -> None:
    print(f"3. full vectorization of a {size:,}-issue workspace (fresh process each, model load excluded)")
    with tempfile.TemporaryDirectory() as data, scratch_plane() as plane:
        workspace_id = seed(plane, size)
        figures = {}
        for mode in ("raw", "pipeline"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, plane.url, workspace_id, f"{data}/{mode}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            figures[mode] = json.loads(out.strip().splitlines()[-1])
            rate = figures[mode]["documents"] / figures[mode]["seconds"]
            print(
                f"   {mode:<8}: {figures[mode]['documents']} docs in {figures[mode]['seconds']:.1f} s = {rate:6.1f} docs/s, "
                f"peak RSS {figures[mode]['rss_mb']:.0f} MB"
            )
        ratio = (figures["pipeline"]["documents"] / figures["pipeline"]["seconds"]) / (
            figures["raw"]["documents"] / figures["raw"]["seconds"]
        )
        print(f"   vectorize / raw fastembed: {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["noop", "latency", "vectorize"])
    parser.add_argument("--child", nargs=4, metavar=("MODE", "URL", "WORKSPACE", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    for name, part in (("noop", bench_noop), ("latency", bench_latency), ("vectorize", bench_vectorize)):
        if args.only in (None, name):
            part()


if __name__ == "__main__":
    main()
