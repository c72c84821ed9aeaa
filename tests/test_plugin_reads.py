"""What ``pi_framework.api`` gives a plugin instead of the core's tables: job reads, ledger reads and plugin state,
on PostgreSQL (production) and SQLite (the one-machine default)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from pi_framework import api
from pi_framework.db.models import JobStatus, WorkspaceVectorization, utcnow


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request, pi_env) -> api.Database:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    pi_env(PI_DATABASE_URL=url)
    return api.get_database()


def _job(database: api.Database, workspace_id: str, status: str, age: timedelta, **columns: object) -> None:
    with database.session() as session:
        session.add(WorkspaceVectorization(workspace_id=workspace_id, status=status, created_at=utcnow() - age, **columns))


def test_job_reads(database) -> None:
    _job(database, "ws-a", JobStatus.FAILED, timedelta(days=2), error="boom")
    _job(database, "ws-a", JobStatus.SUCCESS, timedelta(days=1), live_sync_enabled=True, last_live_sync_at=utcnow())
    _job(database, "ws-b", JobStatus.RUNNING, timedelta(hours=2), progress_done=3, progress_total=9)
    _job(database, "ws-c", JobStatus.QUEUED, timedelta(seconds=5))

    assert api.job_counts(database) == {"failed": 1, "success": 1, "running": 1, "queued": 1}
    a, b, c = api.workspace_jobs(database=database)
    assert (a.workspace_id, a.latest.status, a.by_status, a.live_sync_enabled, a.active) == (
        "ws-a",
        "success",
        {"failed": 1, "success": 1},
        True,
        False,
    )
    assert a.last_live_sync_at is not None and a.last_live_sync_at.tzinfo is not None
    assert (b.latest.progress_done, b.latest.progress_total, b.active, b.last_live_sync_at) == (3, 9, True, None)
    assert [jobs.workspace_id for jobs in api.workspace_jobs("ws-c", database)] == [c.workspace_id] == ["ws-c"]
    assert api.silent_jobs(utcnow() - timedelta(hours=1), database) == 1, "ws-b, silent for two hours"
    oldest = api.oldest_active_progress(database)
    assert oldest is not None and utcnow() - oldest >= timedelta(hours=2)


def test_ledger_reads(database) -> None:
    ledger = api.Ledger(database)
    documents = [
        api.Document(id=doc_id, source=source, kind=source, workspace_id=workspace, title="t", body="b")
        for doc_id, source, workspace in [
            ("notes:w1:a", "notes", "w1"),
            ("notes:w1:a:1", "notes", "w1"),
            ("notes:w1:b", "notes", "w1"),
            ("notes:w2:a", "notes", "w2"),
            ("other:w1:a", "other", "w1"),
        ]
    ]
    ledger.apply(api.LedgerUpdate(confirmed_documents=[(document, 1) for document in documents]))

    assert ledger.workspaces_with_documents(["w1", "w3"]) == {"w1"}
    assert sorted(ledger.find_ids("w1", "notes", ids=["notes:w1:b"], prefixes=["notes:w1:a"])) == [
        "notes:w1:a",
        "notes:w1:a:1",
        "notes:w1:b",
    ]
    assert ledger.find_ids("w1", "notes", prefixes=["notes:w1:_"]) == [], "a prefix is literal, not a LIKE pattern"
    assert ledger.count("notes") == 4 and ledger.count("notes", "notes:w1:") == 3
    first = ledger.records("notes", "notes:w1:", limit=2)
    assert [record.document_id for record in first] == ["notes:w1:a", "notes:w1:a:1"]
    rest = ledger.records("notes", "notes:w1:", after=first[-1].document_id, limit=2)
    assert [(record.document_id, record.workspace_id, record.chunk_count) for record in rest] == [("notes:w1:b", "w1", 1)]


def test_concurrent_updates_of_plugin_state_lose_nothing(database, register_plugin) -> None:
    class Counters:
        @api.hookimpl
        def register_state_names(self, register):
            register("counters")

    register_plugin(Counters(), "counters")
    state = api.PluginState.reserved("counters")
    database.ensure_schema()  # as a worker has it before its threads run

    def bump() -> None:
        for _ in range(10):
            state.update("w1", lambda value: {"n": (value or {}).get("n", 0) + 1})

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert state.load("w1") == {"n": 40}
