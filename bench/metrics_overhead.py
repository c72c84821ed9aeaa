"""Vectorization throughput with metrics on versus off, side by side (prints figures; not a test).

    python bench/metrics_overhead.py                          # 1,000 issues, fastembed, 3 rounds (about 4 minutes on 2 cores)
    python bench/metrics_overhead.py --issues 3000 --rounds 5
    python bench/metrics_overhead.py --embedder hashing       # no model: the pipeline's own cost, the worst case for overhead
    python bench/metrics_overhead.py --scrape-every 1         # scraped every second instead of every 15 s
    PI_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres   (default; a scratch Plane database is created)

Each run is ``vectorize()`` of the same Plane workspace in a fresh process on a fresh PI data dir (SQLite PI
database, embedded sink), the model loaded before the clock starts, exactly what a worker's pool process runs:

* **off**: no ``PI_METRICS_*``: every instrumentation call returns at its first line, prometheus_client is never
  imported (what every worker that does not export runs);
* **on**: ``PI_METRICS_DIR`` set and ``metrics.setup()`` called (what ``worker_start`` does), while this process
  scrapes the folder and the PI database as ``pi worker``'s endpoint would, every ``--scrape-every`` seconds
  (default 15, a common Prometheus scrape interval; 1 is pessimistic), competing for the same cores.

Runs alternate off/on so drift (thermal, other tenants) hits both. Two figures, each the ratio of the medians
(target on/off >= 0.98): wall-clock docs/s, and docs per CPU second (the indexing process's every thread plus,
for "on", the CPU the scrapes took), which neighbours on shared cores disturb far less. It also prints what one
instrumentation call costs when metrics are off.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sqlalchemy import create_engine, text  # noqa: E402

from pi_framework.db import with_driver  # noqa: E402
from pi_framework.plane import schema  # noqa: E402
from pi_framework.plane.sample import PlaneFactory, load_schema, sample_issue  # noqa: E402

ADMIN_URL = os.environ.get("PI_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
#: what this benchmark needs loaded (the Plane issues source, the core)
PLUGINS = "pi_issues"


@contextmanager
def scratch_plane() -> Iterator[PlaneFactory]:
    """A fresh PostgreSQL database with Plane's schema, dropped afterwards."""
    name = f"pi_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(with_driver(ADMIN_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = create_engine(with_driver(url))
    load_schema(engine)
    try:
        yield PlaneFactory(engine, url)
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def seed(plane: PlaneFactory, issues: int) -> str:
    workspace = plane.workspace()
    project = plane.project(workspace, identifier="BEN")
    rows = [plane.issue_values(project, *sample_issue(n), sequence_id=n + 1) for n in range(issues)]
    for start in range(0, len(rows), 5000):
        plane.insert_many(schema.issues, rows[start : start + 5000])
    return workspace["id"]


def environment(data: str, url: str, embedder: str, on: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PI_", "PROMETHEUS", "OPENSEARCH", "CELERY_"))}
    env.update(PI_DATA_DIR=data, PLANE_DATABASE_URL=url, PI_EMBEDDER=embedder, PI_LOAD_PLUGINS=PLUGINS, HF_HUB_OFFLINE="1")
    if on:
        env["PI_METRICS_DIR"] = f"{data}/metrics"
    return env


# ---------------------------------------------------------------------- one run, in a fresh process
def child(workspace_id: str) -> None:
    from pi_framework import metrics, runtime
    from pi_framework.sync.vectorize import vectorize

    settings = runtime.get_registry().settings
    recording = metrics.setup(settings)  # what the worker_start hook does in a pool process
    runtime.get_embedder().embed(["warm up"])  # the model load is not part of the figure
    start, cpu = time.perf_counter(), _cpu()
    result = vectorize(workspace_id)
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu
    assert result["status"] == "success", result
    print(json.dumps({"documents": result["documents_indexed"], "seconds": seconds, "cpu": cpu, "recording": recording}))


def _cpu() -> float:
    """CPU seconds of this process, every thread (onnxruntime's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def scraper(data: str, url: str, embedder: str, every: float, stop: threading.Event, counts: list[float]) -> None:
    """Scrape like pi worker's endpoint, every *every* seconds, until *stop*; *counts* gets each scrape's CPU seconds."""
    from prometheus_client import generate_latest

    from pi_framework import runtime
    from pi_framework.default_plugins import metrics_exporter

    runtime.reconfigure(environment(data, url, embedder, on=True))
    settings = runtime.get_registry().settings
    registry = metrics_exporter.exporter_registry(settings, sweep=True)
    while not stop.wait(every):
        cpu = time.thread_time()
        generate_latest(registry)
        counts.append(time.thread_time() - cpu)


def run(workspace_id: str, url: str, embedder: str, on: bool, every: float) -> dict:
    with tempfile.TemporaryDirectory() as data:
        stop, scrapes = threading.Event(), []
        thread = threading.Thread(target=scraper, args=(data, url, embedder, every, stop, scrapes), daemon=True) if on else None
        if thread is not None:
            os.makedirs(f"{data}/metrics", exist_ok=True)
            thread.start()
        try:
            out = subprocess.run(
                [sys.executable, __file__, "--child", workspace_id],
                env=environment(data, url, embedder, on),
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        finally:
            stop.set()
            if thread is not None:
                thread.join()
        figures = json.loads(out.strip().splitlines()[-1])
        assert figures["recording"] == on, figures
        figures["scrapes"], figures["scrape_cpu"] = len(scrapes), sum(scrapes)
        return figures


def noop_call_ns() -> float:
    """What one instrumentation call costs while metrics are off (nanoseconds)."""
    from pi_framework import metrics
    from pi_framework.pipeline.indexer import IndexStats

    assert not metrics.enabled()
    stats = IndexStats()
    number = 1_000_000
    return min(timeit.repeat(lambda: metrics.indexed(stats), number=number, repeat=5)) / number * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--issues", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--embedder", default="fastembed", choices=["fastembed", "hashing"])
    parser.add_argument("--scrape-every", type=float, default=15.0, help="seconds between scrapes while 'on' (default 15)")
    parser.add_argument("--child", metavar="WORKSPACE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    print(
        f"vectorize() of a {args.issues:,}-issue Plane workspace, embedder {args.embedder}, {args.rounds} rounds off/on, "
        f"a scrape every {args.scrape_every:g} s while on"
    )
    rates: dict[str, list[float]] = {"off": [], "on": []}
    per_cpu: dict[str, list[float]] = {"off": [], "on": []}
    with scratch_plane() as plane:
        workspace_id = seed(plane, args.issues)
        for round_number in range(1, args.rounds + 1):
            for mode in ("off", "on"):
                figures = run(workspace_id, plane.url, args.embedder, on=mode == "on", every=args.scrape_every)
                rate = figures["documents"] / figures["seconds"]
                cpu = figures["cpu"] + figures.get("scrape_cpu", 0.0)  # the exporter's work counts against "on"
                rates[mode].append(rate)
                per_cpu[mode].append(figures["documents"] / cpu)
                extra = f", {figures['scrapes']} scrapes ({figures['scrape_cpu']:.2f} CPU s)" if mode == "on" else ""
                print(
                    f"  round {round_number} {mode:<3}: {figures['documents']} docs in {figures['seconds']:6.2f} s "
                    f"= {rate:7.1f} docs/s, {cpu:6.2f} CPU s = {figures['documents'] / cpu:7.1f} docs/CPU s{extra}"
                )
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    print(f"wall clock: median off {off:.1f} docs/s, on {on:.1f} docs/s: on/off = {on / off:.3f}")
    off, on = statistics.median(per_cpu["off"]), statistics.median(per_cpu["on"])
    print(f"CPU time  : median off {off:.1f} docs/CPU s, on {on:.1f} docs/CPU s: on/off = {on / off:.3f} (target >= 0.98)")
    off, on = max(per_cpu["off"]), max(per_cpu["on"])
    print(f"CPU time  : best   off {off:.1f} docs/CPU s, on {on:.1f} docs/CPU s: on/off = {on / off:.3f} (least disturbed runs)")
    print(f"an instrumentation call with metrics off: {noop_call_ns():.0f} ns")


if __name__ == "__main__":
    main()
