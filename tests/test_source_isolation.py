"""A failing source is isolated at run time (issue 20.6), on PostgreSQL with Plane's schema.

Tried as a new user would, against a Plane database without the ``cycles`` table, ``pi_cycles``' global scan raised
``UndefinedTable`` and failed the whole live-sync tick on every interval: no live sync ran for issues or pages either.
Now, in the tick, the live sync and the reconcile, a source that raises is skipped for that round and the others'
changes flow; its cursor (and watermark) stays, the workspace stays flagged, its error is logged once per interval,
counted, and shown by ``pi status`` and ``pi health`` until the source works again.

Two ways to break a source: the real one (``pi_cycles`` with its table renamed away), and an in-memory test source
(:class:`Flaky`) that raises ``RuntimeError`` in the method a test names, at the call or midway through its stream.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from loguru import logger
from sqlalchemy import select, text

from pi_framework import api, metrics, runtime
from pi_framework.cli import build_cli
from pi_framework.contract.contributions import BaseSource, Changes
from pi_framework.contract.documents import Document
from pi_framework.db import get_database
from pi_framework.db.models import IndexedDocument, JobStatus, utcnow
from pi_framework.default_plugins import metrics_exporter
from pi_framework.plane import schema
from pi_framework.search import search
from pi_framework.sync import current_leases, state
from pi_framework.sync.leases import queued_marker
from pi_framework.sync.live import live_sync
from pi_framework.sync.trigger import GLOBAL_SCAN, trigger
from pi_framework.sync.vectorize import vectorize

BROKEN = 'relation "cycles" does not exist'


class Flaky(BaseSource):
    """A workspace source held in memory. ``broken[method] = error`` makes *method* raise *error*: at the call, or with
    ``midway=True`` after its first item (``changes``: from its documents); ``spare[method] = n`` lets n more calls
    work first."""

    name = kind = "flaky"

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, tuple[str, datetime]]] = {}
        self.broken: dict[str, BaseException] = {}
        self.midway = False
        self.spare: dict[str, int] = {}

    def put(self, workspace_id: str, number: int, title: str) -> str:
        document_id = f"flaky:{workspace_id}:{number}"
        self.documents.setdefault(workspace_id, {})[document_id] = (title, utcnow())
        return document_id

    def _raise_now(self, method: str) -> BaseException | None:
        """The error this call of *method* raises midway (``None``: it works); raises it now unless ``midway``."""
        if method not in self.broken:
            return None
        if self.spare.get(method, 0) > 0:
            self.spare[method] -= 1
            return None
        if not self.midway:
            raise self.broken[method]
        return self.broken[method]

    @staticmethod
    def _stream(error: BaseException | None, items: list[Any]) -> Iterator[Any]:
        for position, item in enumerate(items):
            if error is not None and position == 1:
                raise error
            yield item

    def _document(self, workspace_id: str, document_id: str) -> Document:
        title, at = self.documents[workspace_id][document_id]
        return Document(
            id=document_id,
            source=self.name,
            kind=self.kind,
            workspace_id=workspace_id,
            title=title,
            body=f"{title}.",
            updated_at=at,
        )

    def iter_documents(self, workspace_id: str) -> Iterator[Document]:
        error = self._raise_now("iter_documents")
        ids = sorted(self.documents.get(workspace_id, {}))
        return self._stream(error, [self._document(workspace_id, document_id) for document_id in ids])

    def changes(self, workspace_id: str, cursor: dict[str, Any] | None) -> Changes:
        error = self._raise_now("changes")
        since = datetime.fromisoformat(cursor["at"]) if cursor and cursor.get("at") else None
        rows = sorted(self.documents.get(workspace_id, {}).items(), key=lambda item: item[1][1])
        fresh = [document_id for document_id, (_title, at) in rows if since is None or at > since]
        last = max((at for _title, at in self.documents.get(workspace_id, {}).values()), default=since)
        documents = self._stream(error, [self._document(workspace_id, document_id) for document_id in fresh])
        return Changes(documents, lambda: {"at": last.isoformat() if last else None})

    def visible_ids(self, workspace_id: str) -> Iterator[str]:
        error = self._raise_now("visible_ids")
        return self._stream(error, sorted(self.documents.get(workspace_id, {})))

    def visible_versions(self, workspace_id: str) -> Iterator[tuple[str, datetime | None]]:
        error = self._raise_now("visible_versions")
        rows = sorted(self.documents.get(workspace_id, {}).items())
        return self._stream(error, [(document_id, at) for document_id, (_title, at) in rows])

    def changed_workspaces(self, scan: dict[str, Any] | None, cursors: Any = ()) -> tuple[set[str] | None, dict[str, Any]]:
        self._raise_now("changed_workspaces")
        since = datetime.fromisoformat(scan["at"]) if scan else None
        named = {ws for ws, rows in self.documents.items() if any(since is None or at > since for _t, at in rows.values())}
        return named, {"at": utcnow().isoformat()}


# ---------------------------------------------------------------------- fixtures
@pytest.fixture
def hashing(plane_settings, pi_env):
    return pi_env(PI_EMBEDDER="hashing", PI_CHUNK_TOKENS=24, PI_CHUNK_OVERLAP=0)


@pytest.fixture
def flaky(hashing, register_plugin) -> Flaky:
    """The in-memory source, registered as plugin ``pi_test_flaky`` beside the installed ones (build the world after)."""
    source = Flaky()

    class Plugin:
        @api.hookimpl
        def register_sources(self, register, settings):  # noqa: ANN001, ARG002
            register(source)

    register_plugin(Plugin(), "pi_test_flaky")
    assert "flaky" in runtime.get_registry().sources
    return source


def build(plane_db, flaky: Flaky | None = None) -> dict[str, Any]:
    owner = plane_db.user()
    workspace = plane_db.workspace(owner)
    project = plane_db.project(workspace, identifier="ENG")
    issues = [plane_db.issue(project, f"Issue about topic {n}", f"<p>body of issue {n}</p>") for n in range(3)]
    page = plane_db.page(workspace, owner=owner, name="Migration plan", description_html="<p>Move the zebra cluster.</p>")
    ws = workspace["id"]
    if flaky is not None:
        flaky.put(ws, 1, "Flaky note one")
        flaky.put(ws, 2, "Flaky note two")
    assert vectorize(ws)["status"] == JobStatus.SUCCESS
    live_sync(ws)  # consume the overlap window of the full pass
    trigger()  # the global watermarks exist from here on
    current_leases().clear(queued_marker(ws))
    live_sync(ws)
    assert state.marker(ws) is None, "settled"
    return {"plane": plane_db, "ws": ws, "project": project, "issues": issues, "page": page}


@pytest.fixture
def world(plane_db, hashing) -> dict[str, Any]:
    return build(plane_db)


@pytest.fixture
def flaky_world(plane_db, flaky) -> dict[str, Any]:
    return {**build(plane_db, flaky), "flaky": flaky}


@contextmanager
def without_cycles_table(plane_db) -> Iterator[None]:
    """Plane's database as a new user's may be: no ``cycles`` table (``pi_cycles`` raises ``UndefinedTable``)."""
    with plane_db.engine.begin() as connection:
        connection.execute(text("ALTER TABLE cycles RENAME TO cycles_elsewhere"))
    try:
        yield
    finally:
        with plane_db.engine.begin() as connection:
            connection.execute(text("ALTER TABLE cycles_elsewhere RENAME TO cycles"))


def ledger(workspace_id: str) -> dict[str, datetime | None]:
    with get_database().session() as session:
        rows = session.execute(
            select(IndexedDocument.document_id, IndexedDocument.source_updated_at).where(
                IndexedDocument.workspace_id == workspace_id
            )
        )
        return dict(rows.all())


@contextmanager
def error_log() -> Iterator[list[str]]:
    lines: list[str] = []
    handler = logger.add(lambda message: lines.append(str(message)), level="ERROR", format="{message}")
    try:
        yield lines
    finally:
        logger.remove(handler)


def status_report() -> dict[str, Any]:
    result = CliRunner().invoke(build_cli(), ["status", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def health_report() -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(build_cli(), ["health", "--json"])
    return result.exit_code, json.loads(result.output)


# ---------------------------------------------------------------------- the tick
def test_without_the_cycles_table_the_tick_still_flags_and_dispatches_the_workspace_whose_issue_changed(world) -> None:
    ws, plane = world["ws"], world["plane"]
    cycles_scan, issues_scan = state.load(f"{GLOBAL_SCAN}:cycles", "*"), state.load(f"{GLOBAL_SCAN}:issues", "*")
    with without_cycles_table(plane):
        plane.update(schema.issues, world["issues"][0]["id"], name="Renamed quokka")
        counts = trigger()  # raised ProgrammingError (UndefinedTable) before: no workspace was flagged, nothing sent
        assert counts["flagged"] == 1 and counts["dispatched"] == 1, counts
        assert state.marker(ws) is not None
        assert state.load(f"{GLOBAL_SCAN}:cycles", "*") == cycles_scan, "the broken source's watermark stays"
        assert state.load(f"{GLOBAL_SCAN}:issues", "*") != issues_scan, "the healthy source's watermark moves"
        assert live_sync(ws)["documents_indexed"] == 1
        assert search("quokka", ws, mode="text", all_projects=True)


def test_a_source_whose_global_scan_raises_keeps_its_watermark_and_its_changes_are_flagged_once_it_works(flaky_world) -> None:
    ws, plane, flaky = flaky_world["ws"], flaky_world["plane"], flaky_world["flaky"]
    watermark = state.load(f"{GLOBAL_SCAN}:flaky", "*")
    flaky.broken["changed_workspaces"] = RuntimeError("scan bug")
    plane.update(schema.pages, flaky_world["page"]["id"], name="Migration plan v2")
    counts = trigger()
    assert counts["flagged"] == 1 and counts["dispatched"] == 1, counts
    assert state.load(f"{GLOBAL_SCAN}:flaky", "*") == watermark
    live_sync(ws)
    assert state.marker(ws) is None, "the live sync itself worked: nothing pending"

    flaky.put(ws, 3, "Flaky note three")  # a change only the broken scan can name
    assert trigger()["flagged"] == 0, "not seen while the scan is broken"
    del flaky.broken["changed_workspaces"]
    counts = trigger()
    assert counts["flagged"] == 1 and counts["dispatched"] == 1, "the watermark did not move past it"
    live_sync(ws)
    assert f"flaky:{ws}:3" in ledger(ws)


# ---------------------------------------------------------------------- the live sync
def test_without_the_cycles_table_a_live_sync_applies_issues_and_pages_and_keeps_the_cycles_cursor_and_the_flag(world) -> None:
    ws, plane = world["ws"], world["plane"]
    cycles_cursor, issues_cursor = state.load("cycles", ws), state.load("issues", ws)
    with without_cycles_table(plane):
        plane.update(schema.issues, world["issues"][0]["id"], name="Renamed quokka")
        plane.update(schema.pages, world["page"]["id"], name="Wombat migration plan")
        state.flag(ws)  # what the tick does
        result = live_sync(ws)  # raised ProgrammingError before: nothing of issues or pages was applied
        assert result["status"] == "success" and result["documents_indexed"] == 2
        assert BROKEN in result["skipped_sources"]["cycles"]
        assert search("quokka", ws, mode="text", all_projects=True)
        assert search("wombat", ws, mode="text", all_projects=True)
        assert state.load("cycles", ws) == cycles_cursor, "the skipped source's cursor stays"
        assert state.load("issues", ws) != issues_cursor
        assert state.marker(ws) is not None, "still pending: the next tick sends it again"
        assert trigger()["dispatched"] == 1
        assert live_sync(ws)["skipped_sources"].keys() == {"cycles"}
        assert state.marker(ws) is not None
    result = live_sync(ws)
    assert "skipped_sources" not in result
    assert state.marker(ws) is None, "caught up once the source works again"


def test_a_source_raising_midway_through_its_changes_keeps_its_cursor_then_its_changes_flow(flaky_world) -> None:
    ws, plane, flaky = flaky_world["ws"], flaky_world["plane"], flaky_world["flaky"]
    cursor = state.load("flaky", ws)
    first, second = flaky.put(ws, 3, "Flaky note three"), flaky.put(ws, 4, "Flaky note four")
    flaky.broken["changes"], flaky.midway = RuntimeError("the fourth note is too much"), True
    flaky.spare["changes"] = 1  # the measure reads them all; applying them raises after the first one
    plane.update(schema.issues, flaky_world["issues"][1]["id"], name="Renamed quokka")
    state.flag(ws)
    result = live_sync(ws)
    assert result["skipped_sources"] == {"flaky": "RuntimeError: the fourth note is too much"}
    assert search("quokka", ws, mode="text", all_projects=True), "the other sources' changes flow"
    assert state.load("flaky", ws) == cursor and state.marker(ws) is not None
    assert second not in ledger(ws)

    flaky.broken.clear()
    result = live_sync(ws)
    assert "skipped_sources" not in result
    assert {first, second} <= set(ledger(ws))
    assert state.load("flaky", ws) != cursor and state.marker(ws) is None


# ---------------------------------------------------------------------- the reconcile
def test_a_reconcile_removes_the_healthy_sources_hard_deletes_and_deletes_nothing_of_a_source_that_raised(flaky_world) -> None:
    ws, plane, flaky = flaky_world["ws"], flaky_world["plane"], flaky_world["flaky"]
    gone = flaky_world["issues"][2]["id"]
    plane.hard_delete(schema.issues, gone)
    flaky.broken["visible_versions"], flaky.midway = RuntimeError("versions bug"), True  # one id, then it raises
    result = live_sync(ws, force_reconcile=True)
    assert result["reconcile_deleted"] == 1 and result["reconcile_skipped"] == 1
    indexed = ledger(ws)
    assert f"issues:{gone}" not in indexed
    assert {f"flaky:{ws}:1", f"flaky:{ws}:2"} <= set(indexed), "a partial list of ids deletes nothing"
    assert state.marker(ws) is not None, "a sync that skipped a source does not clear the flag"

    flaky.broken.clear()
    flaky.documents[ws].pop(f"flaky:{ws}:2")  # hard-deleted meanwhile: only a reconcile sees it
    result = live_sync(ws, force_reconcile=True)
    assert result["reconcile_deleted"] == 1 and "reconcile_skipped" not in result
    assert f"flaky:{ws}:2" not in ledger(ws) and state.marker(ws) is None


# ---------------------------------------------------------------------- logged, counted, shown
@pytest.fixture
def recording(hashing, monkeypatch) -> Iterator[None]:
    """This process records metrics into the test's own folder (as a worker process does)."""
    pytest.importorskip("prometheus_client")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert metrics.setup(runtime.get_registry().settings, force=True)
    yield
    metrics.stop()
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from prometheus_client import values

    values.ValueClass = values.get_value_class()


def source_errors_counted() -> dict[tuple[str, str], float]:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    scraped = generate_latest(metrics_exporter.exporter_registry(runtime.get_registry().settings, database_state=False)).decode()
    return {
        (sample.labels["source"], sample.labels["stage"]): sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
        if sample.name == "pi_source_errors_total"
    }


def test_the_error_is_logged_once_per_interval_with_the_source_name_and_counted_every_time(world, recording, monkeypatch) -> None:
    ws, plane = world["ws"], world["plane"]
    interval = runtime.get_registry().settings.CELERY_VECTOR_SYNC_INTERVAL
    with without_cycles_table(plane), error_log() as lines:
        for _ in range(3):
            trigger()
        state.flag(ws)
        live_sync(ws)  # the same source failing in a live sync within the interval: not logged again
        logged = [line for line in lines if "cycles" in line]
        assert len(logged) == 1, lines
        assert "source cycles failed in the live-sync tick's change scan" in logged[0] and BROKEN in logged[0]
        assert "PI_DISABLE_PLUGINS=pi_cycles" in logged[0]
        later = utcnow() + timedelta(seconds=interval)
        monkeypatch.setattr("pi_framework.sync.isolation.utcnow", lambda: later)  # one interval on, still failing
        trigger()
        assert len([line for line in lines if "cycles" in line]) == 2, lines
    counted = source_errors_counted()
    assert counted[("cycles", "tick")] == 4 and counted[("cycles", "live_sync")] == 1, counted


def test_pi_status_and_pi_health_show_the_error_until_the_source_works_again(world) -> None:
    ws, plane = world["ws"], world["plane"]
    assert status_report()["sources"] == []
    with without_cycles_table(plane):
        trigger()
        state.flag(ws)
        live_sync(ws)
        rows = status_report()["sources"]
        assert {(row["source"], row["stage"]) for row in rows} == {("cycles", "tick"), ("cycles", "live_sync")}
        assert all(BROKEN in row["error"] and row["plugin"] == "pi_cycles" and not row["stale"] for row in rows)
        assert next(row for row in rows if row["stage"] == "live_sync")["workspace"] == ws
        printed = CliRunner().invoke(build_cli(), ["status"]).output
        assert "source cycles: skipped, failing in tick since" in printed and "PI_DISABLE_PLUGINS=pi_cycles" in printed
        assert f"pending {ws}" in printed and "source(s) skipped: cycles" in printed
        code, report = health_report()
        assert code == 1 and report["checks"]["sources"]["ok"] is False
        assert "cycles failing in tick" in report["checks"]["sources"]["error"] and BROKEN in report["checks"]["sources"]["error"]
    trigger()
    live_sync(ws)
    assert status_report()["sources"] == [], "cleared once the source works again"
    _code, report = health_report()
    assert report["checks"]["sources"]["ok"] is True
    assert state.marker(ws) is None


def test_the_error_rows_are_written_compare_and_set_on_a_postgresql_pi_database(pi_env, postgres_url, monkeypatch) -> None:
    """Workers share the rows: of two that read the same version, one writes (and logs); the other writes nothing."""
    pi_env(PI_DATABASE_URL=postgres_url)
    from pi_framework.sync import isolation

    assert get_database().engine.dialect.name == "postgresql"
    assert isolation._write("cycles", None, {"errors": {}}, utcnow())  # noqa: SLF001
    assert not isolation._write("cycles", None, {"errors": {}}, utcnow()), "a second insert loses the race"  # noqa: SLF001
    (_value, version) = isolation._rows(["cycles"])["cycles"]  # noqa: SLF001
    assert isolation._write("cycles", version, {"errors": {}}, utcnow())  # noqa: SLF001
    assert not isolation._write("cycles", version, {"errors": {}}, utcnow()), "the row moved on: an update loses"  # noqa: SLF001

    with error_log() as lines:
        isolation.record(isolation.TICK, None, {"cycles": "ProgrammingError: gone"}, ["issues"])
        isolation.record(isolation.LIVE_SYNC, "ws-1", {"cycles": "ProgrammingError: gone"}, ["issues"])
        isolation.record(isolation.TICK, None, {"cycles": "ProgrammingError: gone"}, ["issues"])
    assert len(lines) == 1 and "source cycles failed in the live-sync tick's change scan" in lines[0]
    assert {(row["stage"], row["workspace"]) for row in isolation.source_errors()} == {("tick", None), ("live_sync", "ws-1")}
    isolation.record(isolation.LIVE_SYNC, "ws-2", {}, ["cycles"])
    assert len(isolation.source_errors()) == 2, "a live sync that worked in another workspace clears nothing"
    isolation.record(isolation.LIVE_SYNC, "ws-1", {}, ["cycles"])
    isolation.record(isolation.TICK, None, {}, ["cycles"])
    assert isolation.source_errors() == []
