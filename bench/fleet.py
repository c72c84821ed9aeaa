"""What the benchmarks (and tests/test_many_workers.py) share: scratch PostgreSQL databases, pointing this process at
them, and many vectorized workspaces built cheaply.

* :func:`scratch_database` / :func:`scratch_plane`: a fresh PostgreSQL database (with Plane's schema), dropped after.
* :func:`configure`: this process's settings, registry and engines rebuilt from the given variables.
* :class:`BulkPlane`: :class:`~pi_framework.plane.sample.PlaneFactory` whose rows are collected and written with one
  multi-row insert per table and batch (:meth:`BulkPlane.flush`): same rows, same defaults, thousands a second.
* :func:`build_workspaces`: *n* workspaces of a few issues and pages each, every row stamped days ago.
* :func:`mark_vectorized`: what a finished vectorization leaves in the PI database, for many workspaces in a handful
  of statements: a successful job with live sync on, every source's cursor, a reconcile stamp, and the sources'
  global change-scan watermarks. The cursors are those ``source.changes(ws, None).cursor()`` gives (one global scan of
  the overlap window per tracked table instead of one scan per workspace and table), checked against the real call for
  one workspace.

The index itself stays empty: a live sync indexes what changed, the ledger lookup is by document id, so a benchmark of
ticks, latency and throughput does not need the workspaces' old content in the index.
"""

from __future__ import annotations

import os
import random
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, create_engine, insert, select, text
from sqlalchemy.engine import make_url

from pi_framework import runtime
from pi_framework.db import get_database, with_driver
from pi_framework.db.models import JobStatus, SyncState, WorkspaceVectorization, utcnow
from pi_framework.plane import reset_plane_engine, schema
from pi_framework.plane.sample import PlaneFactory, load_schema, sample_issue
from pi_framework.plane.watermark import Watermark

ADMIN_URL = (
    os.environ.get("PI_BENCH_POSTGRES_URL")
    or os.environ.get("PI_TEST_POSTGRES_URL")
    or "postgresql://postgres@127.0.0.1:5432/postgres"
)
RABBITMQ_URL = os.environ.get("PI_BENCH_RABBITMQ_URL") or os.environ.get("PI_TEST_RABBITMQ_URL")
OPENSEARCH_URL = os.environ.get("PI_BENCH_OPENSEARCH_URL") or os.environ.get("PI_TEST_OPENSEARCH_URL")
#: the plugins a benchmark loads (an allow-list, so another plugin installed in the venv cannot change the figures)
PLUGINS = "pi_issues,pi_pages,opensearch_sink,core_health"
_SERVICES = ("PI_DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "OPENSEARCH_URL", "PI_SINKS", "PI_DISABLE_PLUGINS")


@contextmanager
def scratch_database(prefix: str = "pi_bench") -> Iterator[str]:
    """The URL of a new empty PostgreSQL database next to :data:`ADMIN_URL`, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(with_driver(ADMIN_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        runtime.reset()  # this process's engines let go of the database
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def scratch_plane() -> Iterator[PlaneFactory]:
    """A fresh PostgreSQL database with Plane's schema, dropped afterwards."""
    with scratch_database("pi_bench_plane") as url:
        engine = create_engine(with_driver(url))
        load_schema(engine)
        try:
            yield PlaneFactory(engine, url)
        finally:
            engine.dispose()
            reset_plane_engine()


def configure(**env: str) -> dict[str, str]:
    """Point this process at *env* (embedded defaults unless given) and forget cached settings and engines."""
    runtime.reconfigure(env, unset=_SERVICES)
    return env


# ---------------------------------------------------------------------- Plane rows in bulk
class BulkPlane(PlaneFactory):
    """A :class:`PlaneFactory` whose ``insert`` only collects the row; :meth:`flush` writes them table by table."""

    def __init__(self, plane: PlaneFactory) -> None:
        super().__init__(plane.engine, plane.url)
        self.pending: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def insert(self, table: Table, values: dict[str, Any]) -> dict[str, Any]:
        self.pending[table.name].append(values)
        return values

    def flush(self, batch: int = 5000) -> int:
        """Write every collected row (parents first), *batch* rows per statement; returns how many."""
        written = 0
        for table in schema.metadata.sorted_tables:
            rows = self.pending.pop(table.name, [])
            for start in range(0, len(rows), batch):
                self.insert_many(table, rows[start : start + batch])
            written += len(rows)
        assert not self.pending, f"rows of tables outside Plane's core schema: {sorted(self.pending)}"
        return written


@dataclass
class Fleet:
    """Workspaces built by :func:`build_workspaces`: ids, and each one's issue ids."""

    workspaces: list[str] = field(default_factory=list)
    issues: dict[str, list[str]] = field(default_factory=dict)


def build_workspaces(
    plane: PlaneFactory, count: int, issues: int = 5, pages: int = 1, seed: int = 14, plan: str = "PRO"
) -> Fleet:
    """*count* workspaces (owner, *plan* licence, one project and state, *issues* issues, *pages* pages, half of them
    linked to the project), every row stamped 1 to 60 days ago, written in bulk."""
    rng = random.Random(seed)
    now = utcnow()
    bulk, fleet, n = BulkPlane(plane), Fleet(), 0

    def past() -> datetime:
        return now - timedelta(days=rng.uniform(1, 60))

    for w in range(count):
        stamp = past()
        owner = bulk.user(now=stamp)
        workspace = bulk.workspace(owner, now=stamp)
        bulk.workspace_license(workspace, plan=plan, now=stamp)
        project = bulk.project(workspace, identifier=f"W{w % 1000}", name=f"Project of workspace {w}", now=stamp)
        state = bulk.state(project, "started", now=stamp)
        ids = []
        for sequence in range(1, issues + 1):
            name, html = sample_issue(n)
            n += 1
            row = bulk.issue_values(project, name, html, state, sequence_id=sequence, now=past())
            ids.append(bulk.insert(schema.issues, row)["id"])
        for p in range(pages):
            bulk.page(workspace, owner, name=f"Page {p} of workspace {w}", projects=(project,) if p % 2 else (), now=past())
        fleet.workspaces.append(workspace["id"])
        fleet.issues[workspace["id"]] = ids
    bulk.flush()
    with plane.engine.begin() as connection:
        connection.execute(text("ANALYZE"))
    return fleet


# ---------------------------------------------------------------------- PI rows in bulk
def fresh_cursors(workspace_ids: Iterable[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """``source -> workspace -> cursor``: what ``source.changes(ws, None).cursor()`` returns for each workspace (a full
    pass starting now), computed with one scan of the overlap window per tracked table across all workspaces."""
    wanted = set(workspace_ids)
    cursors: dict[str, dict[str, dict[str, Any]]] = {}
    for source in runtime.get_registry().workspace_sources():
        start = source.db_now()
        per_table = {}
        for name in source.tracked:
            table = source.table(name)
            observed: dict[str, dict[str, datetime]] = defaultdict(dict)
            stmt = select(table.c.id, table.c.updated_at, table.c.workspace_id)
            for row in source.scan_changed(stmt, table, Watermark(start), {}):
                observed[str(row.workspace_id)][row.id] = row.updated_at
            per_table[name] = observed
        cursors[source.name] = {
            ws: {
                name: Watermark(start).advanced(start, per_table[name].get(ws, {}), source.overlap).dump()
                for name in source.tracked
            }
            for ws in wanted
        }
    return cursors


def _same_but_time(cheap: dict[str, Any], real: dict[str, Any]) -> bool:
    return {table: mark["seen"] for table, mark in cheap.items()} == {table: mark["seen"] for table, mark in real.items()}


def mark_vectorized(workspace_ids: list[str], check: bool = True) -> None:
    """What a finished vectorization of each workspace leaves (see the module docstring), written in bulk."""
    from pi_framework.sync import sources, state, trigger

    database = get_database()
    database.ensure_schema()
    cursors = fresh_cursors(workspace_ids)
    if check and workspace_ids:
        for source in sources():
            real = source.changes(workspace_ids[0], None).cursor()
            assert _same_but_time(cursors[source.name][workspace_ids[0]], real), (source.name, real)
    now = utcnow()
    jobs = [
        {
            "workspace_id": ws,
            "status": JobStatus.SUCCESS,
            "live_sync_enabled": True,
            "created_at": now,
            "started_at": now,
            "finished_at": now,
            "progress_at": now,
        }
        for ws in workspace_ids
    ]
    rows = [
        {"source": name, "scope": ws, "cursor": cursor, "updated_at": now}
        for name, by_workspace in cursors.items()
        for ws, cursor in by_workspace.items()
    ]
    rows += [
        {"source": state.RECONCILE, "scope": ws, "cursor": {"at": now.isoformat()}, "updated_at": now} for ws in workspace_ids
    ]
    with database.session() as session:
        for start in range(0, len(jobs), 5000):
            session.execute(insert(WorkspaceVectorization), jobs[start : start + 5000])
        for start in range(0, len(rows), 5000):
            session.execute(insert(SyncState), rows[start : start + 5000])
    trigger.changed_workspaces(sources())  # the global watermarks: the first scan only records the overlap window


def edit(plane: PlaneFactory, issue_id: str, marker: str) -> datetime:
    """Rename an issue so that *marker* is searchable once it is re-indexed; returns its new ``updated_at``."""
    return plane.update(schema.issues, issue_id, name=f"Renamed {marker}")["updated_at"]
