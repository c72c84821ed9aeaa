"""Workspace vectorization and live sync in-process, on a real PostgreSQL with Plane's schema.

Search-level tests use the real fastembed model and the embedded sink; job-logic tests use the
hashing embedder (they assert bookkeeping, not semantics).
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, text, update

from pi_framework import hookimpl
from pi_framework.cli import build_cli
from pi_framework.contract.contributions import BaseSource, Changes
from pi_framework.contract.documents import Document
from pi_framework.db import get_database
from pi_framework.db.models import IndexedChunk, IndexedDocument, JobStatus, WorkspaceVectorization, utcnow
from pi_framework.pipeline.indexer import Indexer
from pi_framework.plane import schema
from pi_framework.search import search
from pi_framework.settings import get_settings
from pi_framework.sync import sources
from pi_framework.sync.compare import missing_or_stale_count, pending_changes
from pi_framework.sync.downgrade import forget_workspace
from pi_framework.sync.jobs import Jobs
from pi_framework.sync.leases import Leases, workspace_lease
from pi_framework.sync.live import live_sync
from pi_framework.sync.trigger import trigger
from pi_framework.sync.vectorize import vectorize

ISSUES = [
    ("Checkout page crashes on Safari", "<p>Clicking <b>Pay now</b> throws a TypeError in Safari 17.</p>"),
    ("Export invoices as CSV", "<p>Finance wants a monthly CSV export of all invoices with VAT.</p>"),
    ("Dark mode for the editor", "<p>Add a night theme with low-contrast colours.</p>"),
    ("Password reset email never arrives", "<p>SMTP relay drops messages to outlook.com addresses.</p>"),
    ("Upload of large attachments times out", "<p>Files above 50 MB fail after thirty seconds.</p>"),
]


@pytest.fixture
def real_model(plane_settings, pi_env):
    return pi_env(PI_EMBEDDER="fastembed")


@pytest.fixture
def hashing(plane_settings, pi_env):
    return pi_env(PI_EMBEDDER="hashing")


def make_workspace(plane_db, identifier: str = "ENG", issues=ISSUES):
    owner = plane_db.user()
    workspace = plane_db.workspace(owner)
    project = plane_db.project(workspace, identifier=identifier)
    state = plane_db.state(project, "started")
    rows = [plane_db.issue(project, name, html, state=state) for name, html in issues]
    return {"owner": owner, "workspace": workspace, "project": project, "state": state, "issues": rows}


def ids(hits) -> set[str]:
    return {hit.document_id for hit in hits}


def ledger_ids(workspace_id: str) -> set[str]:
    with get_database().session() as session:
        return set(session.scalars(select(IndexedDocument.document_id).where(IndexedDocument.workspace_id == workspace_id)))


def latest_job(workspace_id: str) -> WorkspaceVectorization:
    return Jobs(get_database(), get_database().settings).latest(workspace_id)


# ---------------------------------------------------------------------- end to end with the real model
def test_vectorize_then_live_sync_every_change_path(plane_db, real_model) -> None:
    ws = make_workspace(plane_db)
    workspace_id = ws["workspace"]["id"]
    page = plane_db.page(ws["workspace"], name="Release checklist", description_html="<ul><li>Freeze the branch</li></ul>")
    plane_db.issue(ws["project"], "A draft about kubernetes", is_draft=True)

    result = vectorize(workspace_id)
    assert result["status"] == "success" and result["documents_total"] == 6
    job = latest_job(workspace_id)
    assert job.status == JobStatus.SUCCESS and job.live_sync_enabled and job.progress_done == job.progress_total == 6
    assert len(ledger_ids(workspace_id)) == 6
    checkout = f"issues:{ws['issues'][0]['id']}"
    assert checkout in ids(search("safari payment crash", workspace_id, limit=3, all_projects=True))
    assert f"pages:{page['id']}" in ids(search("release checklist", workspace_id, kinds=["pages"], all_projects=True))
    assert not search("kubernetes", workspace_id, mode="text", all_projects=True)

    # edit: the new text becomes searchable, the old one disappears
    plane_db.update(
        schema.issues,
        ws["issues"][1]["id"],
        name="Export invoices as XLSX spreadsheet",
        description_html="<p>Finance now wants spreadsheets.</p>",
    )
    assert live_sync(workspace_id)["documents_indexed"] >= 1
    assert f"issues:{ws['issues'][1]['id']}" in ids(search("XLSX spreadsheet", workspace_id, mode="text", all_projects=True))
    assert not search("CSV", workspace_id, mode="text", all_projects=True)

    # each removal path leaves the index
    plane_db.soft_delete(schema.issues, ws["issues"][0]["id"])
    plane_db.archive(schema.issues, ws["issues"][2]["id"])
    plane_db.update(schema.issues, ws["issues"][3]["id"], is_draft=True)
    plane_db.archive(schema.pages, page["id"])
    result = live_sync(workspace_id)
    assert result["documents_deleted"] == 4
    assert ledger_ids(workspace_id) == {f"issues:{ws['issues'][1]['id']}", f"issues:{ws['issues'][4]['id']}"}
    assert not search("Safari", workspace_id, mode="text", all_projects=True) and not search(
        "checklist", workspace_id, mode="text", all_projects=True
    )

    # a hard delete is only found by the reconcile of ids
    plane_db.hard_delete(schema.issues, ws["issues"][4]["id"])
    assert "reconcile_deleted" not in live_sync(workspace_id)  # not due yet: vectorize just compared every id
    assert f"issues:{ws['issues'][4]['id']}" in ledger_ids(workspace_id)
    assert live_sync(workspace_id, force_reconcile=True)["reconcile_deleted"] == 1
    assert ledger_ids(workspace_id) == {f"issues:{ws['issues'][1]['id']}"}
    assert not search("attachments", workspace_id, mode="text", all_projects=True)

    # an archived project takes its issues out
    plane_db.archive(schema.projects, ws["project"]["id"])
    live_sync(workspace_id)
    assert ledger_ids(workspace_id) == set() and not search("invoices", workspace_id, all_projects=True)
    assert missing_or_stale_count(workspace_id, sources()) == 0


def test_no_result_ever_crosses_workspaces(plane_db, real_model) -> None:
    """Two workspaces with near-identical content: every query in one returns only its own documents (even for an
    operator's search across all projects)."""
    a = make_workspace(plane_db, "ENG")
    b = make_workspace(plane_db, "ENG", issues=[(name + " (team B)", html) for name, html in ISSUES])
    plane_db.issue(b["project"], "Zanzibar secret roadmap", "<p>Only team B knows the zanzibar plan.</p>")
    for ws in (a, b):
        assert vectorize(ws["workspace"]["id"])["status"] == "success"
    a_ids = {f"issues:{row['id']}" for row in a["issues"]}
    for query in ["Safari checkout crash", "CSV export", "team B", "Zanzibar secret roadmap", "ENG-1", "password"]:
        for mode in ("hybrid", "text", "vector"):
            hits = search(query, a["workspace"]["id"], limit=20, mode=mode, all_projects=True)
            assert ids(hits) <= a_ids, (query, mode)
            assert all(hit.workspace_id == a["workspace"]["id"] for hit in hits)
    assert ids(search("Zanzibar", b["workspace"]["id"], mode="text", all_projects=True))


def test_private_pages_are_found_only_by_their_owner(plane_db, real_model) -> None:
    ws = make_workspace(plane_db, issues=[])
    owner, colleague = ws["owner"], plane_db.user()
    private = plane_db.page(
        ws["workspace"],
        owner=owner,
        name="Salary negotiation notes",
        access=1,
        description_html="<p>My salary expectations for the review.</p>",
        projects=(ws["project"],),
    )
    public = plane_db.page(ws["workspace"], owner=owner, name="Salary bands (public)", projects=(ws["project"],))
    workspace_id = ws["workspace"]["id"]
    vectorize(workspace_id)
    assert ids(search("salary", workspace_id, mode="text", all_projects=True)) == {f"pages:{public['id']}"}
    assert ids(search("salary", workspace_id, user_id=colleague["id"], all_projects=True)) == {f"pages:{public['id']}"}
    assert f"pages:{private['id']}" in ids(search("salary", workspace_id, user_id=owner["id"], all_projects=True))


# ---------------------------------------------------------------------- job bookkeeping (hashing embedder)
def test_progress_is_reported_on_the_job_and_through_the_callback(plane_db, hashing, pi_env) -> None:
    pi_env(PI_EMBEDDER="hashing", PI_EMBEDDING_BATCH_SIZE=16)  # a group every 64 chunks
    ws = make_workspace(plane_db, issues=[(f"Issue number {n}", f"<p>body {n}</p>") for n in range(300)])
    reported: list[tuple[int, int | None]] = []
    result = vectorize(ws["workspace"]["id"], on_progress=lambda done, total: reported.append((done, total)))
    assert result["status"] == "success" and result["documents_indexed"] == 300
    assert reported[0] == (0, 300) and reported[-1] == (300, 300)
    assert len(reported) > 3 and [done for done, _ in reported] == sorted(done for done, _ in reported)
    job = latest_job(ws["workspace"]["id"])
    assert (job.progress_done, job.progress_total) == (300, 300) and job.progress_at is not None


def test_duplicate_dispatch_does_not_start_a_parallel_run(plane_db, hashing) -> None:
    ws = make_workspace(plane_db)
    workspace_id = ws["workspace"]["id"]
    jobs = Jobs(get_database(), get_database().settings)
    job_id = jobs.request(workspace_id)
    assert jobs.request(workspace_id) == job_id  # one active job per workspace
    assert jobs.claim(workspace_id, "task-a").claimed
    second = vectorize(workspace_id, task_id="task-b")
    assert second["status"] == "skipped" and "already running" in second["reason"]
    assert latest_job(workspace_id).task_id == "task-a" and not ledger_ids(workspace_id)
    # the same task redelivered (its worker died) takes its job back
    assert vectorize(workspace_id, task_id="task-a")["status"] == "success"


def test_concurrency_cap_defers_and_the_finishing_job_dispatches_the_next(plane_db, hashing, pi_env) -> None:
    pi_env(PI_MAX_CONCURRENT_VECTORIZATIONS=1, PI_EMBEDDER="hashing")
    first, second = make_workspace(plane_db), make_workspace(plane_db, "OPS")
    jobs = Jobs(get_database(), get_database().settings)
    assert jobs.claim(first["workspace"]["id"], "task-1").claimed
    deferred = vectorize(second["workspace"]["id"], task_id="task-2")
    assert deferred["status"] == "skipped" and deferred["reason"].startswith("deferred")
    queued = latest_job(second["workspace"]["id"])
    assert queued.status == JobStatus.QUEUED and queued.alive_at is None
    assert vectorize(first["workspace"]["id"], task_id="task-1")["status"] == "success"
    assert latest_job(second["workspace"]["id"]).alive_at is not None  # sent when the slot freed


def test_silent_running_job_is_requeued_and_resumes_without_re_embedding(plane_db, hashing) -> None:
    ws = make_workspace(plane_db, issues=[(f"Issue {n}", f"<p>text {n}</p>") for n in range(40)])
    workspace_id = ws["workspace"]["id"]
    jobs = Jobs(get_database(), get_database().settings)
    assert jobs.claim(workspace_id, "dead-task").claimed
    # the dead task had indexed a part of the workspace before it died
    source = next(source for source in sources() if source.name == "issues")
    Indexer().index(list(source.iter_documents(workspace_id))[:25])
    with get_database().session() as session:
        session.execute(update(WorkspaceVectorization).values(alive_at=utcnow() - timedelta(hours=1)))
    heartbeat_before = latest_job(workspace_id).progress_at

    counts = jobs.redispatch_lost()
    assert counts["requeued"] == 1 and counts["dispatched"] == 1
    job = latest_job(workspace_id)
    assert job.status == JobStatus.QUEUED and job.progress_at == heartbeat_before  # progress time kept for the reaper
    result = vectorize(workspace_id, task_id="new-task")
    assert result["status"] == "success"
    assert result["documents_already_indexed"] == 25 and result["chunks_embedded"] == 15
    assert latest_job(workspace_id).attempts == 2


def test_live_sync_takes_small_backlogs_and_refeeds_big_ones(plane_db, hashing, pi_env) -> None:
    pi_env(PI_LIVE_SYNC_MAX_MISSING=3, PI_EMBEDDER="hashing")
    small, big, never = make_workspace(plane_db), make_workspace(plane_db, "BIG"), make_workspace(plane_db, "NEW")
    for ws in (small, big):
        vectorize(ws["workspace"]["id"])
        live_sync(ws["workspace"]["id"])  # consume the overlap window of the full pass
    plane_db.update(schema.issues, small["issues"][0]["id"], name="changed")
    for row in big["issues"]:
        plane_db.update(schema.issues, row["id"], name=row["name"] + " v2")
    assert pending_changes(small["workspace"]["id"], sources(), 3) == 1
    assert pending_changes(big["workspace"]["id"], sources(), 3) > 3
    counts = trigger()
    assert counts["dispatched"] == 2, "the never-vectorized one is not live-synced"
    assert live_sync(small["workspace"]["id"])["documents_indexed"] == 1
    assert live_sync(big["workspace"]["id"])["status"] == "refeed"
    jobs = Jobs(get_database(), get_database().settings)
    assert never["workspace"]["id"] not in jobs.live_sync_workspaces()
    assert jobs.latest(big["workspace"]["id"]).status == JobStatus.QUEUED
    assert missing_or_stale_count(big["workspace"]["id"], sources()) == 5


def test_one_live_sync_per_workspace(plane_db, hashing) -> None:
    ws = make_workspace(plane_db)
    workspace_id = ws["workspace"]["id"]
    vectorize(workspace_id)
    lease = Leases(get_database(), 30)
    assert lease.acquire(workspace_lease(workspace_id), "other-task")
    assert live_sync(workspace_id)["status"] == "skipped"
    plane_db.update(schema.issues, ws["issues"][0]["id"], name="changed while a sync runs")
    assert trigger()["busy"] == 1
    lease.release(workspace_lease(workspace_id), "other-task")
    assert live_sync(workspace_id)["status"] == "success"


def test_forget_workspace_removes_only_that_workspace(plane_db, hashing) -> None:
    a, b = make_workspace(plane_db), make_workspace(plane_db, "OPS")
    for ws in (a, b):
        vectorize(ws["workspace"]["id"])
    assert forget_workspace(a["workspace"]["id"]) == 5
    assert not ledger_ids(a["workspace"]["id"]) and len(ledger_ids(b["workspace"]["id"])) == 5
    assert not latest_job(a["workspace"]["id"]).live_sync_enabled
    with get_database().session() as session:
        assert session.scalar(select(func.count()).select_from(IndexedChunk)) == 5


class ToySource(BaseSource):
    """A third-party workspace source (no Plane, no SQL): the framework's tasks drive it unchanged (``BaseSource``
    gives it ``visible_versions``: presence only)."""

    name, kind, scope = "notes", "notes", "workspace"

    def __init__(self) -> None:
        self.notes: dict[str, dict[str, str | int | None]] = {}  # id -> workspace, text, version (None: removed)
        self.version = 0

    def put(self, note_id: str, workspace_id: str, text: str | None) -> None:
        self.version += 1
        self.notes[note_id] = {"workspace": workspace_id, "text": text, "version": self.version}

    def _document(self, note_id: str, note) -> Document:
        return Document(
            id=f"notes:{note_id}",
            source="notes",
            kind="notes",
            workspace_id=note["workspace"],
            title=note["text"] or "",
            deleted=note["text"] is None,
        )

    def iter_documents(self, workspace_id):
        return (self._document(k, n) for k, n in self.notes.items() if n["workspace"] == workspace_id and n["text"])

    def visible_ids(self, workspace_id):
        return (f"notes:{k}" for k, n in self.notes.items() if n["workspace"] == workspace_id and n["text"])

    def changes(self, workspace_id, cursor):
        since, now = (cursor or {}).get("version", 0), self.version
        if cursor is None:
            return Changes(iter(self.iter_documents(workspace_id)), cursor=lambda: {"version": now})
        changed = [self._document(k, n) for k, n in self.notes.items() if n["workspace"] == workspace_id and n["version"] > since]
        return Changes(iter(changed), cursor=lambda: {"version": now})


def test_a_third_party_workspace_source_is_vectorized_and_live_synced(plane_db, hashing, register_plugin) -> None:
    toy = ToySource()

    class Plugin:
        @hookimpl
        def register_sources(self, register) -> None:
            register(toy)

    register_plugin(Plugin(), "toy_notes")
    ws = make_workspace(plane_db, issues=ISSUES[:2])
    workspace_id = ws["workspace"]["id"]
    toy.put("n1", workspace_id, "Remember the milk")
    toy.put("n2", workspace_id, "Quarterly planning notes")
    toy.put("other", "another-workspace", "Not ours")
    assert vectorize(workspace_id)["documents_total"] == 4
    assert {"notes:n1", "notes:n2"} <= ledger_ids(workspace_id)
    toy.put("n1", workspace_id, "Remember the oat milk")
    toy.put("n2", workspace_id, None)
    toy.put("n3", workspace_id, "Fresh idea")
    result = live_sync(workspace_id)
    assert result["documents_indexed"] == 2 and result["documents_deleted"] == 1
    assert {"notes:n1", "notes:n3"} <= ledger_ids(workspace_id) and "notes:n2" not in ledger_ids(workspace_id)
    assert missing_or_stale_count(workspace_id, sources()) == 0


def test_bad_rows_never_fail_the_vectorization(plane_db, hashing) -> None:
    """The issue's bad inputs go through the pipeline: indexed where meaningful, the rest skipped with a reason."""
    ws = make_workspace(plane_db, issues=[])
    project = ws["project"]
    good = [
        plane_db.issue(project, "Empty description", ""),
        plane_db.issue(project, "Empty paragraph", "<p></p>"),
        plane_db.issue(project, "Only an image", '<p><img src="https://example.com/a.png"></p>'),
        plane_db.issue(project, "Only a mention", '<p><mention-component entity_name="user_mention"></mention-component></p>'),
        plane_db.issue(project, "Five megabytes", "<p>" + "lorem ipsum dolor sit amet " * 200_000 + "</p>"),
        plane_db.issue(project, "Broken HTML", "<div><p>unclosed <b>bold <i>italic</div></span>"),
        plane_db.issue(project, "🚀 إطلاق الإصدار الجديد", "<p>שלום עולם</p>"),
        plane_db.issue(project, "Odd priority", priority="blocker"),
        plane_db.issue(project, "Null stripped", "<p>text</p>", description_stripped=None),
    ]
    gone = plane_db.project(ws["workspace"])
    plane_db.issue(gone, "Project hard-deleted")
    with plane_db.engine.begin() as connection:
        connection.execute(text("ALTER TABLE issues DROP CONSTRAINT IF EXISTS issues_project_id_fkey"))
        connection.execute(text("DELETE FROM projects WHERE id = :id"), {"id": gone["id"]})
    result = vectorize(ws["workspace"]["id"])
    assert result["status"] == "success" and result["failed"] == 0
    assert ledger_ids(ws["workspace"]["id"]) == {f"issues:{row['id']}" for row in good}


def test_cli_vectorize_now_then_sync(plane_db, hashing) -> None:
    ws = make_workspace(plane_db, issues=ISSUES[:2])
    workspace_id = ws["workspace"]["id"]
    runner = CliRunner()
    result = runner.invoke(build_cli(), ["vectorize", workspace_id, "--now"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["documents_indexed"] == 2
    plane_db.update(schema.issues, ws["issues"][0]["id"], name="Renamed")
    result = runner.invoke(build_cli(), ["sync", workspace_id, "--reconcile"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["documents_indexed"] == 1


def test_a_vectorization_whose_source_cannot_run_fails_with_one_line_naming_source_cause_and_fix(pi_env) -> None:
    """The README's production install with Plane not configured: `pi vectorize W --now` says which source cannot run,
    why, and how to go on without it, in one line and no traceback; the job fails with that reason (retried later)."""
    pi_env(PI_EMBEDDER="hashing")
    result = CliRunner().invoke(build_cli(), ["vectorize", "ws-1", "--now"])
    assert result.exit_code == 1
    (line,) = [line for line in result.output.splitlines() if line.strip() and not line.strip()[0].isdigit()]
    assert "Traceback" not in result.output
    assert line.startswith("Error: vectorize ws-1: source ") and "PLANE_DATABASE_URL is not set" in line
    source = line.split("source ", 1)[1].split(" ", 1)[0]
    assert f"PI_DISABLE_PLUGINS=pi_{source}" in line, line
    job = Jobs(get_database(), get_settings()).latest("ws-1")
    assert job.status == JobStatus.FAILED and "PLANE_DATABASE_URL" in job.error
