"""Scale benchmarks (issue 14): what a live-sync tick costs at 100 vs 10,000 workspaces, edit-to-searchable latency
and throughput per worker count with 10,000 vectorized workspaces, and Plane's missing ``updated_at`` index.

    eval "$(tests/support/services.sh)"     # PostgreSQL, RabbitMQ, OpenSearch (or PI_BENCH_POSTGRES_URL/..._RABBITMQ_URL)
    python bench/scale.py                   # noop, latency, workers, plane-index (about 15 minutes on 2 cores)
    python bench/scale.py --only noop       # parts: noop, latency, workers, plane-index (comma-separated)
    python bench/scale.py --quick           # every part at toy sizes (tests/test_bench_scale.py runs this)
    python bench/scale.py --only plane-index --plane-issues 500000   # a smaller Plane database

Services: PostgreSQL for the PI database and for Plane's (scratch databases, dropped at the end), RabbitMQ as the
broker (a queue of this run's own, deleted at the end), the embedded sink (``--sink opensearch``: the OpenSearch node
under an index prefix of this run's own) and the hashing embedder: what is measured is the sync machinery, not the
model (embedding throughput is bench/pipeline.py's). Workspaces are built cheaply (bench/fleet.py): Plane rows with
multi-row inserts, the PI rows a finished vectorization leaves written in bulk, the index empty.

1. noop: a tick (``trigger()``, what ``trigger_live_sync`` runs) with nothing changed, at 100 and at 10,000 vectorized
   workspaces, measured in alternating rounds in one run: wall time (median), SQL statements (a
   ``before_cursor_execute`` listener on every ``Engine``), tasks queued (the tick's counts and the broker queue's
   message count). Targets: ratio <= 2, statements equal, 0 queued. Then where the 10,000 tick's time goes, and a
   tick with 1 and 100 workspaces changed (what a change costs; the same tasks in the broker queue).
2. latency: a worker with beat (``CELERY_VECTOR_SYNC_INTERVAL=2``) over the 10,000 workspaces; an issue of a random
   workspace is edited at a random phase of the interval and the time until ``search`` finds the new text is
   measured (target p50 <= interval + 1 s); the trigger task's own durations are read from the worker log.
3. workers: 1, 2, then 3 workers (``-c 1`` each) over the same workspaces; a burst of edits, one per workspace in as
   many workspaces, all committed at once; live syncs per second from the first to the last document confirmed in
   the ledger, and the time from the burst to the last one. Twice per count: "direct" (beat off, one live-sync task
   sent per edit: what the workers alone can do) and "via beat" (beat on the first worker: the trigger measures the
   changed workspaces and dispatches; its ticks, overlapping ticks and edits never indexed are reported).
4. plane-index: a Plane database of 5,000 workspaces and 2,000,000 issues (``INSERT ... SELECT generate_series``),
   10 edits/s over the last 2 minutes; the global change scan (``changed_workspaces``, both sources) and each tracked
   table's share of it, without and with ``CREATE INDEX CONCURRENTLY ... (updated_at)``.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fleet  # noqa: E402
from sqlalchemy import create_engine, select, text  # noqa: E402

from pi_framework import runtime  # noqa: E402
from pi_framework.db import get_database, with_driver  # noqa: E402
from pi_framework.db.models import IndexedDocument, utcnow  # noqa: E402
from pi_framework.plane.sample import PlaneFactory  # noqa: E402
from pi_framework.plane.watermark import Watermark  # noqa: E402
from pi_framework.testing.integrity import statements  # noqa: E402


@dataclass
class Sizes:
    small: int = 100
    large: int = 10_000
    rounds: int = 5
    ticks: int = 5
    changed: tuple[int, ...] = (1, 100)
    edits: int = 20
    burst: int = 300
    workers: tuple[int, ...] = (1, 2, 3)
    plane_workspaces: int = 5_000
    plane_issues: int = 2_000_000


QUICK = Sizes(
    small=10,
    large=100,
    rounds=2,
    ticks=2,
    changed=(1, 5),
    edits=3,
    burst=20,
    workers=(1, 2),
    plane_workspaces=50,
    plane_issues=20_000,
)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def quiet() -> None:
    """This process logs warnings only (the workers keep their INFO logs, whose task durations are read)."""
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


# ---------------------------------------------------------------------- the broker queue
def queued_messages(queue: str) -> int:
    """Messages waiting in *queue* on RabbitMQ (0 when the queue was never declared: nothing was ever sent)."""
    from amqp.exceptions import NotFound
    from kombu import Connection

    with Connection(fleet.RABBITMQ_URL) as connection:
        try:
            return connection.default_channel.queue_declare(queue=queue, passive=True).message_count
        except NotFound:
            return 0


def drop_queue(queue: str) -> None:
    from kombu import Connection

    with Connection(fleet.RABBITMQ_URL) as connection:
        connection.default_channel.queue_delete(queue)


def consume_queued(queue: str) -> None:
    """Stand in for the workers: drop the queued live syncs, the markers saying they are queued, and the pending-work
    flags the live syncs would clear once caught up."""
    from amqp.exceptions import NotFound
    from kombu import Connection
    from sqlalchemy import delete

    from pi_framework.db import get_database
    from pi_framework.db.models import Lease, SyncState
    from pi_framework.sync.state import PENDING

    with Connection(fleet.RABBITMQ_URL) as connection:
        try:
            connection.default_channel.queue_purge(queue)
        except NotFound:
            pass
    with get_database().session() as session:
        session.execute(delete(Lease).where(Lease.name.startswith("queued:")))
        session.execute(delete(SyncState).where(SyncState.source == PENDING))


def require_services(*names: str) -> None:
    missing = [
        name
        for name, url in (("RabbitMQ", fleet.RABBITMQ_URL), ("OpenSearch", fleet.OPENSEARCH_URL))
        if name in names and not url
    ]
    if missing:
        sys.exit(f'bench/scale.py needs {" and ".join(missing)}: eval "$(tests/support/services.sh)" first')


# ---------------------------------------------------------------------- a fleet of vectorized workspaces
@dataclass
class Setup:
    size: int
    plane: PlaneFactory
    fleet: fleet.Fleet
    env: dict[str, str]

    def use(self) -> None:
        fleet.configure(**self.env)


@contextmanager
def vectorized(size: int, data: str, queue: str, sink: str = "embedded", **extra: str) -> Iterator[Setup]:
    """*size* vectorized workspaces (Plane and PI databases of their own) and the environment pointing at them."""
    with fleet.scratch_plane() as plane, fleet.scratch_database() as pi_url:
        start = time.perf_counter()
        workspaces = fleet.build_workspaces(plane, size)
        env = {
            "PI_DATA_DIR": f"{data}/{size}",
            "PI_DATABASE_URL": pi_url,
            "PLANE_DATABASE_URL": plane.url,
            "CELERY_BROKER_URL": fleet.RABBITMQ_URL,
            "CELERY_DEFAULT_QUEUE": queue,
            "PI_EMBEDDER": "hashing",
            "PI_LOAD_PLUGINS": fleet.PLUGINS,
            "CELERY_WORKSPACE_PLAN_SYNC_ENABLED": "0",
            "CELERY_DOCS_SYNC_ENABLED": "0",
            "HF_HUB_OFFLINE": "1",
            **extra,
        }
        if sink == "opensearch":
            env.update(
                PI_SINKS="opensearch", OPENSEARCH_URL=fleet.OPENSEARCH_URL, OPENSEARCH_INDEX_PREFIX=f"scale{uuid.uuid4().hex[:8]}"
            )
        else:
            env.update(PI_SINKS="embedded")
        setup = Setup(size, plane, workspaces, env)
        setup.use()
        fleet.mark_vectorized(workspaces.workspaces)
        print(f"   ({size:,} workspaces built and marked vectorized in {time.perf_counter() - start:.0f} s)", flush=True)
        try:
            yield setup
        finally:
            if sink == "opensearch":
                setup.use()
                (opensearch,) = runtime.get_sinks()
                opensearch.client.indices.delete(index=f"{env['OPENSEARCH_INDEX_PREFIX']}-*")


# ---------------------------------------------------------------------- 1. no-op tick
def bench_noop(sizes: Sizes) -> None:
    from pi_framework.sync import trigger

    require_services("RabbitMQ")
    print(
        f"1. no-op live-sync tick (trigger_live_sync's trigger(), nothing changed), {sizes.small:,} vs {sizes.large:,} workspaces"
    )
    queue = f"pi_bench_scale_{uuid.uuid4().hex[:8]}"
    with (
        tempfile.TemporaryDirectory() as data,
        vectorized(sizes.small, data, queue) as small,
        vectorized(sizes.large, data, queue) as large,
    ):
        from pi_framework.celery_app import create_app  # built now: the environment points at this run's queue

        create_app()  # the current app sends to this run's queue
        quiet()
        setups = {sizes.small: small, sizes.large: large}
        for size, setup in setups.items():  # the very first tick (no global watermark yet) checks every workspace, once
            setup.use()
            print(
                f"   first tick ever at {size:,} workspaces: {trigger.trigger()['dispatched']:,} live syncs (once, then never again)"
            )
            consume_queued(queue)
        walls: dict[int, list[float]] = {size: [] for size in setups}
        counted: dict[int, set[int]] = {size: set() for size in setups}
        sent = dict.fromkeys(setups, 0)
        for _ in range(sizes.rounds):  # alternating rounds: both sizes see the same machine load
            for size, setup in setups.items():
                setup.use()
                trigger.trigger()  # warm: engines, registry, the first connection
                for _ in range(sizes.ticks):
                    with statements() as seen:
                        start = time.perf_counter()
                        counts = trigger.trigger()
                        walls[size].append(time.perf_counter() - start)
                    counted[size].add(len(seen))
                    sent[size] += counts["dispatched"]
                    assert not counts["flagged"] and not counts["busy"], counts
        in_broker = queued_messages(queue)
        p50 = {size: statistics.median(values) for size, values in walls.items()}
        for size in setups:
            print(
                f"   {size:>7,} workspaces: tick {ms(p50[size])} median (min {ms(min(walls[size]))}, {len(walls[size])} ticks), "
                f"{'/'.join(map(str, sorted(counted[size])))} SQL statements, {sent[size]} tasks queued"
            )
        print(
            f"   ratio {sizes.large:,} / {sizes.small:,}: {p50[sizes.large] / p50[sizes.small]:.2f} (target <= 2); statements "
            f"{'equal' if counted[sizes.small] == counted[sizes.large] else 'DIFFER'}; broker queue: {in_broker} messages (target 0)"
        )
        large.use()
        breakdown(sizes.large)
        changed_ticks(large, queue, sizes.changed)
        drop_queue(queue)


def breakdown(size: int) -> None:
    """Where a quiet tick's time goes: the same reads the trigger does, timed one by one."""
    from pi_framework.sync import current_jobs, current_leases, sources, state, trigger
    from pi_framework.sync.state import reconcile_due

    settings = runtime.get_registry().settings
    stamps = state.all_of(state.RECONCILE)
    live = current_jobs().live_sync_workspaces()
    parts = {
        "reconcile stamps (all_of)": lambda: state.all_of(state.RECONCILE),
        "live-synced workspaces": lambda: current_jobs().live_sync_workspaces(),
        "reconcile_due per workspace": lambda: [reconcile_due(ws, settings.PI_RECONCILE_INTERVAL, stamps) for ws in live],
        "global change scan (both sources)": lambda: trigger.changed_workspaces(sources()),
        "pending markers + leases": lambda: (state.all_of(state.PENDING), current_leases().held()),
    }
    due = text(
        "WITH latest AS (SELECT workspace_id, max(id) AS id FROM workspace_vectorizations GROUP BY workspace_id) "
        "SELECT j.workspace_id FROM workspace_vectorizations j JOIN latest ON latest.id = j.id "
        "LEFT JOIN sync_states r ON r.source = :stamp AND r.scope = j.workspace_id "
        "WHERE j.status = 'success' AND j.live_sync_enabled AND (r.scope IS NULL OR r.updated_at < :before)"
    )

    def due_in_sql() -> list[str]:
        before = utcnow() - timedelta(seconds=settings.PI_RECONCILE_INTERVAL)
        with get_database().session() as session:
            return list(session.scalars(due, {"stamp": state.RECONCILE, "before": before}))

    parts["(sketch: the reconcile-due selection done in SQL instead)"] = due_in_sql
    figures = {name: statistics.median(timed(part) for _ in range(5)) for name, part in parts.items()}
    print(
        f"   where a quiet tick's time goes at {size:,} workspaces: "
        + ", ".join(f"{name} {ms(t)}" for name, t in figures.items())
    )


def changed_ticks(setup: Setup, queue: str, changed: tuple[int, ...]) -> None:
    """Ticks right after edits in *k* workspaces: what a change costs, and exactly *k* tasks in the broker."""
    from pi_framework.sync import trigger

    rng = random.Random(5)
    pool = list(setup.fleet.workspaces)
    rng.shuffle(pool)
    for k in changed:
        edited, pool = pool[:k], pool[k:]
        for n, workspace_id in enumerate(edited):
            fleet.edit(setup.plane, setup.fleet.issues[workspace_id][0], f"changed{k}x{n}")
        before = queued_messages(queue)
        with statements() as seen:
            start = time.perf_counter()
            counts = trigger.trigger()
            wall = time.perf_counter() - start
        arrived = queued_messages(queue) - before
        consume_queued(queue)
        print(
            f"   tick after edits in {k:>3} of {setup.size:,} workspaces: {ms(wall)}, {len(seen)} statements, "
            f"{counts['dispatched']} live syncs queued ({arrived} new messages in the broker queue)"
        )
        assert counts["dispatched"] == k == arrived, (counts, arrived)


# ---------------------------------------------------------------------- 2. and 3. a real worker
def start_workers(env: dict[str, str], data: str, count: int, tag: str, concurrency: int = 1, beat: bool = True):  # noqa: ANN201
    """*count* workers (beat on the first unless not *beat*), ready."""
    from pi_framework.worker_process import WorkerProcess

    workers = [
        WorkerProcess({**os.environ, **env}, Path(data) / f"worker-{tag}-{n}.log", beat=beat and n == 0, concurrency=concurrency)
        for n in range(count)
    ]
    try:
        for worker in workers:
            worker.wait_ready(180)
    except BaseException:
        for worker in workers:
            worker.stop()
        raise
    return workers


def trigger_durations(log: str) -> list[float]:
    return [float(s) for s in re.findall(r"trigger_live_sync\[[^\]]+\] succeeded in ([0-9.]+)s", log)]


def bench_latency(setup: Setup, data: str, edits: int, interval: int) -> None:
    from pi_framework.search import search
    from pi_framework.worker_process import wait_for

    print(
        f"2. edit -> searchable, {setup.size:,} vectorized workspaces, CELERY_VECTOR_SYNC_INTERVAL={interval}, one worker -c 2 "
        f"with beat, RabbitMQ, PostgreSQL, {setup.env['PI_SINKS']} sink, hashing embedder"
    )
    setup.use()
    (worker,) = start_workers(setup.env, data, 1, "latency", concurrency=2)
    rng = random.Random(7)
    latencies = []
    try:
        for n in range(edits):
            time.sleep(rng.uniform(0, interval))  # edits land at any phase of the beat interval
            workspace_id = rng.choice(setup.fleet.workspaces)
            marker = f"zebracorn{n}quux{uuid.uuid4().hex[:6]}"
            fleet.edit(setup.plane, rng.choice(setup.fleet.issues[workspace_id]), marker)
            edited = time.perf_counter()
            wait_for(
                lambda marker=marker, ws=workspace_id: search(marker, ws, mode="text", all_projects=True),
                120,
                0.05,
                "the edit searchable",
            )
            latencies.append(time.perf_counter() - edited)
        log = worker.log()
    finally:
        worker.stop()
    latencies.sort()
    p50, p90 = statistics.median(latencies), latencies[max(0, int(len(latencies) * 0.9) - 1)]
    ticks = trigger_durations(log)
    print(
        f"   {edits} edits: p50 {p50:.2f} s, p90 {p90:.2f} s, max {latencies[-1]:.2f} s (target p50 <= {interval + 1} s); "
        f"trigger task in the worker: median {statistics.median(ticks) if ticks else float('nan'):.2f} s over {len(ticks)} ticks"
    )


def confirmed(document_ids: dict[str, datetime]) -> dict[str, datetime]:
    """``document id -> indexed_at`` of the documents whose edited version the ledger confirms."""
    from pi_framework.pipeline.ledger import same_instant

    with get_database().session() as session:
        rows = session.execute(
            select(IndexedDocument.document_id, IndexedDocument.source_updated_at, IndexedDocument.indexed_at).where(
                IndexedDocument.document_id.in_(list(document_ids))
            )
        ).all()
    return {row.document_id: row.indexed_at for row in rows if same_instant(row.source_updated_at, document_ids[row.document_id])}


def ticks_of(log: str) -> list[tuple[datetime, datetime, str]]:
    """``(start, end, state)`` of every trigger tick in worker logs (each pool process runs one task at a time)."""
    pattern = re.compile(
        r"^(\S+ \S+) \| \w+\s*\| (\d+) \| pi_framework.celery_app \| task (start|finish) pi.celery_app.trigger_live_sync"
        r"(?:.*state=(\w+))?",
        re.MULTILINE,
    )
    began: dict[str, datetime] = {}
    ticks = []
    for stamp, pid, what, state in pattern.findall(log):
        moment = datetime.fromisoformat(stamp)
        if what == "start":
            began[pid] = moment
        elif pid in began:
            ticks.append((began.pop(pid), moment, state))
    return sorted(ticks)


def overlapping(ticks: list[tuple[datetime, datetime, str]]) -> int:
    """Ticks that started while another was still running."""
    count, running_until = 0, None
    for start, end, _ in ticks:
        if running_until is not None and start < running_until:
            count += 1
        running_until = end if running_until is None else max(running_until, end)
    return count


def settle(edited: dict[str, datetime], deadline: float = 600, stall: float = 60) -> dict[str, datetime]:
    """:func:`confirmed` once every edit is, or once nothing new was confirmed for *stall* seconds (edits lost)."""
    start = last_progress = time.monotonic()
    found: dict[str, datetime] = {}
    while time.monotonic() - start < deadline and time.monotonic() - last_progress < stall:
        now = confirmed(edited)
        if len(now) > len(found):
            found, last_progress = now, time.monotonic()
        if len(found) == len(edited):
            break
        time.sleep(0.25)
    return found


def burst_run(setup: Setup, data: str, burst: int, count: int, rng: random.Random, direct: bool) -> str:
    """Edits in *burst* workspaces, then the time until each is confirmed in the ledger, with *count* workers: through
    beat and the trigger, or (*direct*) with beat off and one live-sync task sent per workspace right after its edit."""
    from pi_framework.sync.dispatch import LIVE_SYNC_TASK, send_task

    workers = start_workers(setup.env, data, count, f"{'direct' if direct else 'beat'}{count}", beat=not direct)
    try:
        edited: dict[str, datetime] = {}
        for n, workspace_id in enumerate(rng.sample(setup.fleet.workspaces, burst)):
            issue_id = rng.choice(setup.fleet.issues[workspace_id])
            edited[f"issues:{issue_id}"] = fleet.edit(setup.plane, issue_id, f"burst{count}x{n}")
            if direct:
                send_task(LIVE_SYNC_TASK, workspace_id=workspace_id)
        committed = time.perf_counter()
        done = settle(edited)
        total = time.perf_counter() - committed
        logs = "".join(worker.log() for worker in workers)
    finally:
        for worker in workers:
            worker.stop()
    stamps = sorted(done.values())
    spread = (stamps[-1] - stamps[0]).total_seconds() if stamps else 0.0
    lost = len(edited) - len(done)
    figure = (
        f"{(len(done) - 1) / spread if spread else float('nan'):5.1f} live syncs/s ({spread:4.1f} s first to last confirmed), "
        f"burst -> {'all' if not lost else 'last'} searchable {total - (60 if lost else 0):5.1f} s"
    )
    if not direct:
        ticks = ticks_of(logs)
        longest = max(((end - start).total_seconds() for start, end, _ in ticks), default=0.0)
        figure += (
            f"; {len(ticks)} ticks, the longest {longest:.1f} s, {overlapping(ticks)} started while another ran, "
            f"{sum(state != 'SUCCESS' for *_, state in ticks)} failed"
        )
    return figure + (f"; {lost} EDITS NEVER INDEXED (60 s without progress)" if lost else "")


def bench_workers(setup: Setup, data: str, burst: int, counts: tuple[int, ...]) -> None:
    from pi_framework.celery_app import create_app

    print(
        f"3. throughput per worker count: bursts of {burst} edits in {burst} of {setup.size:,} workspaces, workers -c 1 each, "
        "2 shared cores; 'direct': beat off, one live-sync task sent per edit (the workers alone); 'via beat': beat on the "
        "first worker, the trigger measures and dispatches"
    )
    setup.use()
    create_app()  # the current app sends to the workers' queue
    quiet()
    rng = random.Random(11)
    for count in counts:
        print(f"   {count} worker(s), direct:   {burst_run(setup, data, burst, count, rng, direct=True)}", flush=True)
        print(f"   {count} worker(s), via beat: {burst_run(setup, data, burst, count, rng, direct=False)}", flush=True)


def bench_worker_parts(sizes: Sizes, parts: set[str], sink: str, interval: int = 2) -> None:
    require_services("RabbitMQ", *(["OpenSearch"] if sink == "opensearch" else []))
    queue = f"pi_bench_scale_{uuid.uuid4().hex[:8]}"
    env = {"CELERY_VECTOR_SYNC_INTERVAL": str(interval), "PI_REDISPATCH_INTERVAL": "60"}
    try:
        with tempfile.TemporaryDirectory() as data, vectorized(sizes.large, data, queue, sink, **env) as setup:
            if "latency" in parts:
                bench_latency(setup, data, sizes.edits, interval)
            if "workers" in parts:
                bench_workers(setup, data, sizes.burst, sizes.workers)
    finally:
        drop_queue(queue)


# ---------------------------------------------------------------------- 4. Plane's missing updated_at index
PLANE_SQL = """
INSERT INTO users (id, username, display_name, first_name, last_name, is_active, is_bot, date_joined, created_at, updated_at)
SELECT md5('u' || w)::uuid, 'user' || w, 'user' || w, '', '', true, false, now() - interval '2 years',
       now() - interval '2 years', now() - interval '2 years'
FROM generate_series(1, :workspaces) w;

INSERT INTO workspaces (id, created_at, updated_at, name, slug, owner_id, timezone, background_color)
SELECT md5('w' || w)::uuid, now() - interval '2 years', now() - interval '2 years', 'Workspace ' || w, 'ws-' || w,
       md5('u' || w)::uuid, 'UTC', '#3f76ff'
FROM generate_series(1, :workspaces) w;

INSERT INTO projects (id, created_at, updated_at, workspace_id, name, identifier, description, network, page_view, timezone)
SELECT md5('p' || w || '.' || p)::uuid, now() - interval '2 years', now() - interval '3 minutes' - random() * interval '700 days',
       md5('w' || w)::uuid, 'Project ' || p, 'P' || p, '', 2, true, 'UTC'
FROM generate_series(1, :workspaces) w, generate_series(1, :projects) p;

INSERT INTO states (id, created_at, updated_at, workspace_id, project_id, name, description, color, slug, sequence,
                    "group", "default", is_triage)
SELECT md5('s' || w || '.' || p || '.' || s)::uuid, now() - interval '2 years', now() - interval '2 years',
       md5('w' || w)::uuid, md5('p' || w || '.' || p)::uuid, 'State ' || s, '', '#60646C', 'state-' || s, 65535,
       (ARRAY['backlog', 'unstarted', 'started', 'completed'])[s], s = 1, false
FROM generate_series(1, :workspaces) w, generate_series(1, :projects) p, generate_series(1, 4) s;

INSERT INTO issues (id, created_at, updated_at, workspace_id, project_id, state_id, name, description_json,
                    description_html, description_stripped, priority, sequence_id, sort_order, is_draft)
SELECT md5('i' || g)::uuid, x.t, x.t, md5('w' || x.w)::uuid, md5('p' || x.w || '.' || x.p)::uuid,
       md5('s' || x.w || '.' || x.p || '.' || (1 + g % 4))::uuid,
       'Work item ' || g || ': the checkout is slow for large workspaces', '{}',
       '<p>' || repeat('Steps to reproduce: open the page, click Save, wait. ', 6) || g || '</p>',
       repeat('Steps to reproduce: open the page, click Save, wait. ', 6) || g, 'none', g, 65535, false
FROM generate_series(1, :issues) g,
     LATERAL (SELECT 1 + g % :workspaces AS w, 1 + (g / :workspaces) % :projects AS p,
                     now() - interval '3 minutes' - random() * interval '700 days' AS t) x;

INSERT INTO pages (id, created_at, updated_at, workspace_id, owned_by_id, name, description_json, description_html,
                   description_stripped, access, color, is_locked, is_global, view_props, logo_props, sort_order)
SELECT md5('g' || w || '.' || n)::uuid, now() - interval '2 years', now() - interval '3 minutes' - random() * interval '700 days',
       md5('w' || w)::uuid, md5('u' || w)::uuid, 'Page ' || n, '{}',
       '<p>' || repeat('Meeting notes and decisions of the week. ', 12) || '</p>',
       repeat('Meeting notes and decisions of the week. ', 12), 0, '', false, n % 2 = 0, '{"full_width": false}', '{}', 65535
FROM generate_series(1, :workspaces) w, generate_series(1, :pages) n;

INSERT INTO project_pages (id, created_at, updated_at, workspace_id, project_id, page_id)
SELECT md5('l' || w || '.' || n)::uuid, now() - interval '2 years', now() - interval '2 years', md5('w' || w)::uuid,
       md5('p' || w || '.' || (1 + n % :projects))::uuid, md5('g' || w || '.' || n)::uuid
FROM generate_series(1, :workspaces) w, generate_series(1, :pages) n WHERE n % 2 = 1;
"""

#: edits of the last two minutes at *rate* per second: what every tick's overlap window re-reads
RECENT_EDITS_SQL = """
UPDATE issues SET updated_at = now() - random() * interval '115 seconds'
WHERE id IN (SELECT md5('i' || (1 + floor(random() * :issues))::bigint)::uuid FROM generate_series(1, :edits));
UPDATE pages SET updated_at = now() - random() * interval '115 seconds'
WHERE id IN (SELECT md5('g' || (1 + floor(random() * :workspaces))::bigint || '.1')::uuid FROM generate_series(1, :page_edits));
"""

INDEXED = ("issues", "pages", "projects", "states", "project_pages")


def build_plane(plane: PlaneFactory, workspaces: int, issues: int, projects: int = 5, pages: int = 20) -> float:
    start = time.perf_counter()
    values = {"workspaces": workspaces, "issues": issues, "projects": projects, "pages": pages}
    with plane.engine.begin() as connection:
        for statement in filter(str.strip, PLANE_SQL.split(";\n")):
            connection.execute(text(statement), {k: v for k, v in values.items() if f":{k}" in statement})
    with plane.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
    return time.perf_counter() - start


def recent_edits(plane: PlaneFactory, workspaces: int, issues: int, rate: float = 10.0) -> int:
    edits = int(rate * 115)
    with plane.engine.begin() as connection:
        connection.execute(text(RECENT_EDITS_SQL.split(";\n")[0]), {"issues": issues, "edits": edits})
        connection.execute(text(RECENT_EDITS_SQL.split(";\n")[1]), {"workspaces": workspaces, "page_edits": max(1, edits // 20)})
    return edits


def scan_figures(runs: int = 5) -> dict[str, float]:
    """Median seconds of the global change scan of each source, and of each tracked table's part of it."""
    from pi_framework.sync import sources

    figures: dict[str, float] = {}
    following = {source.name: source.changed_workspaces(None)[1] for source in sources()}  # watermark = now
    for source in sources():
        figures[f"changed_workspaces({source.name})"] = statistics.median(
            timed(lambda source=source: source.changed_workspaces(following[source.name])) for _ in range(runs)
        )
        for name in source.tracked:
            table = source.table(name)
            mark = Watermark.load(following[source.name][name])
            stmt = select(table.c.id, table.c.updated_at, table.c.workspace_id)
            figures[name] = statistics.median(
                timed(lambda s=source, stmt=stmt, table=table, mark=mark: list(s.scan_changed(stmt, table, mark, {})))
                for _ in range(runs)
            )
    return figures


def explain(plane: PlaneFactory) -> str:
    """The plan of the issues scan's first page (what every tick runs at least once)."""
    with plane.engine.connect() as connection:
        plan = connection.execute(
            text(
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT id, updated_at, workspace_id FROM issues "
                "WHERE updated_at > now() - interval '122 seconds' ORDER BY updated_at, id LIMIT 200"
            )
        ).scalars()
        lines = [line.strip() for line in plan]
    nodes = [line.removeprefix("->").strip() for n, line in enumerate(lines) if n == 0 or line.startswith("->")]
    runtime_ms = next((line for line in lines if line.startswith("Execution Time")), "")
    return f"{' / '.join(nodes)} ({runtime_ms.lower()})"


def bench_plane_index(sizes: Sizes) -> None:
    from pi_framework.sync import sources

    print(
        f"4. Plane's missing updated_at index: {sizes.plane_workspaces:,} workspaces, {sizes.plane_issues:,} issues, "
        "10 edits/s over the overlap window"
    )
    with tempfile.TemporaryDirectory() as data, fleet.scratch_plane() as plane:
        built = build_plane(plane, sizes.plane_workspaces, sizes.plane_issues)
        edits = recent_edits(plane, sizes.plane_workspaces, sizes.plane_issues)
        with plane.engine.connect() as connection:
            rows = {name: connection.execute(text(f"SELECT count(*) FROM {name}")).scalar_one() for name in INDEXED}
            size = connection.execute(text("SELECT pg_size_pretty(pg_total_relation_size('issues'))")).scalar_one()
        print(
            f"   built in {built:.0f} s: "
            + ", ".join(f"{count:,} {name}" for name, count in rows.items())
            + f"; issues table {size}; {edits} issues edited in the last 115 s"
        )
        fleet.configure(PI_DATA_DIR=data, PLANE_DATABASE_URL=plane.url, PI_EMBEDDER="hashing", PI_LOAD_PLUGINS=fleet.PLUGINS)
        sources()  # registry
        without = scan_figures()
        plan_without = explain(plane)
        admin = create_engine(with_driver(plane.url), isolation_level="AUTOCOMMIT")
        created = {}
        with admin.connect() as connection:
            for name in INDEXED:
                created[name] = timed(
                    lambda name=name: connection.execute(
                        text(f"CREATE INDEX CONCURRENTLY ix_{name}_updated_at ON {name} (updated_at)")
                    )
                )
            index_size = connection.execute(text("SELECT pg_size_pretty(pg_relation_size('ix_issues_updated_at'))")).scalar_one()
            connection.execute(text("ANALYZE"))
        admin.dispose()
        with_index = scan_figures()
        plan_with = explain(plane)
    print(f"   {'scan':<34} {'no index':>10} {'index':>10} {'ratio':>8}")
    for name, seconds in without.items():
        print(f"   {name:<34} {ms(seconds):>10} {ms(with_index[name]):>10} {seconds / with_index[name]:>7.0f}x")
    print(f"   issues page plan without the index: {plan_without}")
    print(f"   issues page plan with the index:    {plan_with}")
    print(
        "   CREATE INDEX CONCURRENTLY: "
        + ", ".join(f"{name} {t:.1f} s" for name, t in created.items())
        + f"; ix_issues_updated_at {index_size}"
    )


PARTS = ("noop", "latency", "workers", "plane-index")


def parts(value: str) -> set[str]:
    chosen = {part.strip() for part in value.split(",") if part.strip()}
    if not chosen or chosen - set(PARTS):
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {', '.join(PARTS)}")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=parts, help="comma-separated parts: noop, latency, workers, plane-index")
    parser.add_argument("--quick", action="store_true", help="toy sizes: a smoke test of every part")
    parser.add_argument(
        "--sink", choices=["embedded", "opensearch"], default="embedded", help="sink of the latency and workers parts"
    )
    parser.add_argument("--workspaces", type=int, help="the large fleet (default 10,000)")
    parser.add_argument("--plane-issues", type=int, help="issues of plane-index (default 2,000,000)")
    parser.add_argument("--plane-workspaces", type=int, help="workspaces of plane-index (default 5,000)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    sizes.large = args.workspaces or sizes.large
    sizes.plane_issues = args.plane_issues or sizes.plane_issues
    sizes.plane_workspaces = args.plane_workspaces or sizes.plane_workspaces
    started = time.perf_counter()
    quiet()
    chosen = args.only or set(PARTS)
    if "noop" in chosen:
        bench_noop(sizes)
    if chosen & {"latency", "workers"}:
        bench_worker_parts(sizes, chosen & {"latency", "workers"}, args.sink)
    if "plane-index" in chosen:
        bench_plane_index(sizes)
    print(f"(bench/scale.py{' --quick' if args.quick else ''}: {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
