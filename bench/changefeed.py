"""Benchmarks of the change feed (logical replication) against polling, on Plane's real schema (prints figures; not a test).

    python bench/changefeed.py                       # everything (about 5 minutes on 2 cores)
    python bench/changefeed.py --only reconcile      # one part: reconcile | latency | idle
    python bench/changefeed.py --only idle --idle-seconds 600   # ten idle minutes
    python bench/changefeed.py --only latency --embedder hashing   # the machinery alone, without the model's cost
    PI_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres   (else PI_TEST_POSTGRES_URL; wal_level=logical)

1. reconcile: what the full compare the feed asks for costs, per 10,000 items, Plane and the PI database both on
   PostgreSQL: nothing to do; 500 items archived (deleted from the index); the id+version pass alone.
2. latency: one run of a real worker (RabbitMQ when PI_BENCH_RABBITMQ_URL / PI_TEST_RABBITMQ_URL is set, else the
   embedded broker), fastembed and the embedded sink, a 2,000-issue workspace; first polling alone
   (CELERY_VECTOR_SYNC_INTERVAL=2, feed off), then the same worker with the feed on (after its warm-up of half
   PI_SYNC_OVERLAP_SECONDS, during which every change is compared): edits at 20/s for 10 s, each
   timed until the ledger holds the new version (the sinks confirmed it: searchable), p50/p99; then a bulk archive of
   500 items without updated_at, timed until none is left in the index (polling: until the reconcile, an hour).
3. idle: ``pi changefeed run`` streaming while an unwatched table churns for 60 s (``--idle-seconds``): its CPU (% of
   a core), the slot's retained WAL while churning (the whole cluster's WAL of one feedback interval) and at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fleet import PLUGINS, configure, mark_vectorized, scratch_database, scratch_plane  # noqa: E402 - bench/fleet.py
from live_sync import seed  # noqa: E402 - bench/live_sync.py
from sqlalchemy import insert, select, text  # noqa: E402

from pi_framework import runtime  # noqa: E402
from pi_framework.db import get_database  # noqa: E402
from pi_framework.db.models import IndexedDocument, JobStatus, utcnow  # noqa: E402
from pi_framework.plane import schema  # noqa: E402
from pi_framework.settings import get_settings  # noqa: E402


def fake_ledger(workspace_id: str) -> int:
    """Ledger rows for every visible document, as a vectorization would leave them (no sink content: the compare reads
    the ledger only)."""
    rows = []
    for source in runtime.get_registry().workspace_sources():
        for document_id, stamp in source.visible_versions(workspace_id):
            rows.append(
                {"document_id": document_id, "source": source.name, "kind": source.kind, "workspace_id": workspace_id,
                 "source_updated_at": stamp, "chunk_count": 0}
            )  # fmt: skip
    with get_database().session() as session:
        for start in range(0, len(rows), 5000):
            session.execute(insert(IndexedDocument), rows[start : start + 5000])
    return len(rows)


def timed(call, runs: int = 5) -> float:  # noqa: ANN001
    call()
    values = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        values.append(time.perf_counter() - start)
    return statistics.median(values)


# ---------------------------------------------------------------------- 1. reconcile
def bench_reconcile(size: int = 10_000) -> None:
    from pi_framework.sync import sources
    from pi_framework.sync.compare import compare
    from pi_framework.sync.live import reconcile

    print(f"1. reconcile (full compare) of a {size:,}-issue workspace, Plane and the PI database on PostgreSQL, median of 5")
    with tempfile.TemporaryDirectory() as data, scratch_plane() as plane, scratch_database("pi_bench_pi") as pi_url:
        workspace_id = seed(plane, size)
        configure(
            PI_DATA_DIR=data, PLANE_DATABASE_URL=plane.url, PI_DATABASE_URL=pi_url, PI_EMBEDDER="hashing", PI_LOAD_PLUGINS=PLUGINS
        )
        mark_vectorized([workspace_id])
        documents = fake_ledger(workspace_id)
        with get_database().session() as session:
            session.execute(text("ANALYZE"))
        issues = runtime.get_registry().sources["issues"]
        versions = timed(lambda: sum(1 for _ in issues.visible_versions(workspace_id)))
        one = timed(lambda: compare(issues, workspace_id))
        every = timed(lambda: [compare(source, workspace_id) for source in sources()])
        whole = timed(lambda: reconcile(workspace_id))
        print(f"   {documents:,} documents in the ledger; per 10,000 items:")
        scale = 10_000 / size
        print(f"   issues visible_versions (Plane query + paging): {versions * scale * 1000:7.1f} ms")
        print(f"   compare, issues source:                        {one * scale * 1000:7.1f} ms")
        print(f"   compare, every source (issues, pages, cycles): {every * scale * 1000:7.1f} ms")
        print(f"   reconcile with nothing to do:                  {whole * scale * 1000:7.1f} ms")
        with plane.engine.begin() as connection:
            archived = connection.execute(
                text(
                    "UPDATE issues SET archived_at = current_date WHERE id IN (SELECT id FROM issues ORDER BY id LIMIT 500) RETURNING id"
                )
            ).all()
        start = time.perf_counter()
        counts = reconcile(workspace_id)
        print(
            f"   reconcile after a bulk archive of {len(archived)} (removes them from the index): "
            f"{(time.perf_counter() - start) * 1000:7.1f} ms ({counts})"
        )


# ---------------------------------------------------------------------- 2. latency, feed vs polling
def ledger_versions(workspace_id: str) -> dict[str, object]:
    with get_database().session() as session:
        return dict(
            session.execute(
                select(IndexedDocument.document_id, IndexedDocument.source_updated_at).where(
                    IndexedDocument.workspace_id == workspace_id
                )
            ).all()
        )


def run_edits(plane, workspace_id: str, issue_ids: list[str], rate: float, seconds: float, tag: str) -> list[float]:  # noqa: ANN001
    """Edit issues at *rate* per second for *seconds*; return each edit's seconds until the ledger holds it."""
    from pi_framework.pipeline.ledger import same_instant

    outstanding: dict[str, tuple[float, object]] = {}
    latencies: list[float] = []
    count = int(rate * seconds)
    start = time.perf_counter()
    for n in range(count):
        due = start + n / rate
        while time.perf_counter() < due:
            _collect(workspace_id, outstanding, latencies, same_instant)
            time.sleep(min(0.01, max(0.0, due - time.perf_counter())))
        issue_id = issue_ids[n % len(issue_ids)]
        stamp = utcnow()
        plane.update(schema.issues, issue_id, name=f"{tag} edit {n} kangaroo{n}", updated_at=stamp)
        outstanding[f"issues:{issue_id}"] = (time.perf_counter(), stamp)
    deadline = time.perf_counter() + 120
    while outstanding and time.perf_counter() < deadline:
        _collect(workspace_id, outstanding, latencies, same_instant)
        time.sleep(0.02)
    latencies += [float("inf")] * len(outstanding)
    return latencies


def _collect(workspace_id, outstanding, latencies, same_instant) -> None:  # noqa: ANN001
    if not outstanding:
        return
    now = time.perf_counter()
    versions = ledger_versions(workspace_id)
    for document_id, (edited, stamp) in list(outstanding.items()):
        if same_instant(versions.get(document_id), stamp):
            latencies.append(now - edited)
            del outstanding[document_id]


def archive_gone(plane, workspace_id: str, issue_ids: list[str], limit: float) -> float | None:  # noqa: ANN001
    """Seconds until a bulk archive (no updated_at) of *issue_ids* has left the index; ``None`` past *limit*."""
    with plane.engine.begin() as connection:
        connection.execute(
            text("UPDATE issues SET archived_at = current_date WHERE id = ANY(CAST(:ids AS uuid[]))"), {"ids": issue_ids}
        )
    start = time.perf_counter()
    wanted = {f"issues:{issue}" for issue in issue_ids}
    while time.perf_counter() - start < limit:
        if not wanted & set(ledger_versions(workspace_id)):
            return time.perf_counter() - start
        time.sleep(0.05)
    return None


def summary(latencies: list[float]) -> str:
    values = sorted(latencies)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return f"p50 {statistics.median(values):.2f} s, p99 {p99:.2f} s, max {values[-1]:.2f} s ({len(values)} edits)"


def bench_latency(
    size: int = 2_000, rate: float = 20.0, seconds: float = 10.0, interval: int = 2, embedder: str = "fastembed"
) -> None:
    from pi_framework.celery_app import create_app
    from pi_framework.changefeed.feed import setup
    from pi_framework.sync import vectorize
    from pi_framework.sync.jobs import Jobs
    from pi_framework.worker_process import WorkerProcess, wait_for

    broker = os.environ.get("PI_BENCH_RABBITMQ_URL") or os.environ.get("PI_TEST_RABBITMQ_URL")
    print(
        f"2. edit -> searchable, {size:,} issues, {rate:g} edits/s for {seconds:g} s, a real worker ({'RabbitMQ' if broker else 'embedded broker'}), "
        f"{embedder}, embedded sink; polling at CELERY_VECTOR_SYNC_INTERVAL={interval}, then the feed"
    )
    slot = f"pi_bench_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as data, scratch_plane() as plane:
        workspace_id = seed(plane, size)
        env = configure(
            PI_DATA_DIR=data,
            PLANE_DATABASE_URL=plane.url,
            CELERY_VECTOR_SYNC_INTERVAL=str(interval),
            CELERY_DEFAULT_QUEUE=f"pi_bench_{uuid.uuid4().hex[:8]}",
            PI_EMBEDDER=embedder,
            PI_LOAD_PLUGINS=PLUGINS,
            PI_CHANGEFEED_SLOT=slot,
            PI_CHANGEFEED_PUBLICATION=slot,
            **({"CELERY_BROKER_URL": broker} if broker else {}),
        )
        create_app()
        with plane.engine.connect() as connection:
            ids = [str(row.id) for row in connection.execute(select(schema.issues.c.id).order_by(schema.issues.c.id))]
        edited, archived = ids[:200], ids[-1000:]
        results = {}
        try:
            for mode in ("polling", "feed"):
                if mode == "feed":
                    setup(get_settings())
                worker_env = {**os.environ, **env, "PI_CHANGEFEED_ENABLED": "1" if mode == "feed" else "0"}
                worker = WorkerProcess(worker_env, Path(data) / f"worker-{mode}.log", beat=True, concurrency=2)
                try:
                    worker.wait_ready()
                    if mode == "polling":
                        start = time.perf_counter()
                        vectorize.request_vectorization(workspace_id)
                        jobs = Jobs(get_database(), get_settings())
                        wait_for(
                            lambda jobs=jobs: jobs.latest(workspace_id).status == JobStatus.SUCCESS, 900, 0.5, "vectorization"
                        )
                        print(f"   ({size:,} issues vectorized by the worker in {time.perf_counter() - start:.1f} s)")
                        time.sleep(2 * interval)  # the overlap window of the full pass is consumed
                    else:
                        from pi_framework.changefeed.feed import slot_info

                        wait_for(lambda: slot_info(get_settings()).active_pid, 60, 0.2, "the worker's feed streams")
                        # steady state: a consumer tells an edit from a bulk update by the stamps it saw, so for half an
                        # overlap window after its first transaction every change gets a compare (the feed's warm-up)
                        plane.update(schema.issues, ids[-1], name="warm-up")
                        time.sleep(get_settings().PI_SYNC_OVERLAP_SECONDS / 2 + 2)
                    latencies = run_edits(plane, workspace_id, edited, rate, seconds, mode)
                    batch = archived[:500] if mode == "polling" else archived[500:]
                    gone = archive_gone(plane, workspace_id, batch, 30 if mode == "polling" else 60)
                    results[mode] = (latencies, gone)
                    print(
                        f"   {mode:>7}: {summary(latencies)}; bulk archive of 500: "
                        + (f"gone in {gone:.2f} s" if gone is not None else "still searchable after 30 s (until the reconcile)")
                    )
                finally:
                    worker.stop()
        finally:
            from pi_framework.changefeed.feed import drop_slot

            drop_slot(get_settings())


# ---------------------------------------------------------------------- 3. idle consumer
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_idle(seconds: float = 60.0) -> None:
    from pi_framework.changefeed.feed import drop_slot, setup, slot_info

    print(f"3. idle consumer: pi changefeed run for {seconds:g} s while an unwatched table (users) churns")
    slot = f"pi_bench_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as data, scratch_plane() as plane:
        env = configure(
            PI_DATA_DIR=data,
            PLANE_DATABASE_URL=plane.url,
            PI_EMBEDDER="hashing",
            PI_LOAD_PLUGINS=PLUGINS,
            PI_CHANGEFEED_SLOT=slot,
            PI_CHANGEFEED_PUBLICATION=slot,
        )
        get_database().ensure_schema()
        setup(get_settings())
        process = subprocess.Popen(
            [sys.executable, "-m", "pi_framework.cli", "changefeed", "run"],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            from pi_framework.worker_process import wait_for

            wait_for(lambda: slot_info(get_settings()).active_pid, 60, 0.2, "the consumer streams")
            time.sleep(2)
            before, start = cpu_seconds(process.pid), time.perf_counter()
            users = [plane.user()["id"] for _ in range(20)]
            n, max_lag = 0, 0
            while time.perf_counter() - start < seconds:
                plane.update(schema.users, users[n % len(users)], display_name=f"churn {n}")
                n += 1
                if n % 50 == 0:
                    max_lag = max(max_lag, slot_info(get_settings()).lag_bytes or 0)
                time.sleep(0.01)
            used = cpu_seconds(process.pid) - before
            elapsed = time.perf_counter() - start
            with plane.engine.connect() as connection:
                wal = connection.execute(text("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")).scalar_one()
            time.sleep(get_settings().PI_CHANGEFEED_FEEDBACK_SECONDS + 1)
            lag = slot_info(get_settings()).lag_bytes
            print(
                f"   {n} unwatched updates ({n / elapsed:.0f}/s): consumer CPU {100 * used / elapsed:.2f} % of a core; "
                f"slot lag at most {max_lag:,} bytes while churning, {lag:,} bytes after one feedback interval (WAL at {wal:,})"
            )
        finally:
            process.terminate()
            process.wait(15)
            drop_slot(get_settings())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["reconcile", "latency", "idle"])
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="How long the idle part churns (the issue asks 600).")
    parser.add_argument("--embedder", default="fastembed", help="Embedder of the latency part (hashing: the machinery alone).")
    parser.add_argument("--rate", type=float, default=20.0, help="Edits per second of the latency part.")
    args = parser.parse_args()
    os.environ.setdefault(
        "PI_BENCH_POSTGRES_URL", os.environ.get("PI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    for part, run in (
        ("reconcile", bench_reconcile),
        ("latency", lambda: bench_latency(rate=args.rate, embedder=args.embedder)),
        ("idle", lambda: bench_idle(args.idle_seconds)),
    ):
        if args.only in (None, part):
            run()


if __name__ == "__main__":
    main()
