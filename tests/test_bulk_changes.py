"""Bursts of changes above ``PI_LIVE_SYNC_MAX_MISSING`` (issue: archiving a 60-item project froze the workspace).

One measure of pending work (:func:`pending_changes`) decides between a live sync and a bulk re-feed, so
every workspace with pending work is taken by exactly one path, and the index converges to what Plane
shows: archived items gone, new items in, pages made private hidden from everyone but their owner.
"""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import select

from pi_framework.celery_app import create_app
from pi_framework.db import get_database
from pi_framework.db.models import IndexedDocument, JobStatus
from pi_framework.plane import schema
from pi_framework.search import search
from pi_framework.sync import sources
from pi_framework.sync.compare import missing_or_stale_count, pending_changes
from pi_framework.sync.jobs import Jobs
from pi_framework.sync.live import live_sync
from pi_framework.sync.trigger import stuck_workspaces, trigger
from pi_framework.sync.vectorize import request_vectorization, vectorize
from pi_framework.testing.integrity import index_report, settle
from pi_framework.worker_process import WorkerProcess, wait_for

LIMIT = 50


@pytest.fixture
def hashing(plane_settings, pi_env):
    return pi_env(PI_EMBEDDER="hashing", PI_LIVE_SYNC_MAX_MISSING=LIMIT)


def jobs() -> Jobs:
    return Jobs(get_database(), get_database().settings)


def ledger_ids(workspace_id: str) -> set[str]:
    with get_database().session() as session:
        return set(session.scalars(select(IndexedDocument.document_id).where(IndexedDocument.workspace_id == workspace_id)))


def visible_ids(workspace_id: str) -> set[str]:
    return {document_id for source in sources() for document_id in source.visible_ids(workspace_id)}


def paths(ticks: list[dict]) -> list[str]:
    """What the live syncs of each tick did, flattened: ``success`` or ``refeed``."""
    return [status for tick in ticks for status in tick["synced"].values()]


@pytest.fixture
def big_project(plane_db, hashing):
    """A vectorized workspace: a project of 60 items (45 issues, 15 project pages, a few already hidden), another
    project, and workspace pages; live sync caught up."""
    owner = plane_db.user()
    workspace = plane_db.workspace(owner)
    big = plane_db.project(workspace, identifier="BIG")
    small = plane_db.project(workspace, identifier="OPS")
    started = plane_db.state(big, "started")
    triage = plane_db.state(big, "triage")
    issues = [plane_db.issue(big, f"Big project item {n}", f"<p>body {n}</p>", state=started) for n in range(45)]
    for row in issues[:3]:
        plane_db.update(schema.issues, row["id"], is_draft=True)
    pages = [plane_db.page(workspace, owner=owner, name=f"Big page {n}", projects=(big,)) for n in range(15)]
    team_pages = [plane_db.page(workspace, owner=owner, name=f"Team page {n}") for n in range(4)]
    plane_db.issue(small, "Ops runbook", "<p>restart the thing</p>")
    workspace_id = workspace["id"]
    assert vectorize(workspace_id)["status"] == JobStatus.SUCCESS
    settle()
    return {
        "plane": plane_db,
        "owner": owner,
        "workspace_id": workspace_id,
        "big": big,
        "small": small,
        "triage": triage,
        "issues": issues,
        "pages": pages,
        "team_pages": team_pages,
    }


def assert_index_equals_visible(workspace_id: str) -> None:
    assert ledger_ids(workspace_id) == visible_ids(workspace_id)
    assert missing_or_stale_count(workspace_id, sources()) == 0
    assert pending_changes(workspace_id, sources(), LIMIT) == 0


def test_archiving_a_60_item_project_is_taken_by_a_bulk_refeed_at_once(big_project) -> None:
    ws, plane = big_project["workspace_id"], big_project["plane"]
    plane.archive(schema.projects, big_project["big"]["id"])
    # afterwards: two new items elsewhere, two team pages made private
    new = [plane.issue(big_project["small"], f"Created after the archive {n}") for n in range(2)]
    for page in big_project["team_pages"][:2]:
        plane.update(schema.pages, page["id"], access=1)

    assert pending_changes(ws, sources(), LIMIT) > LIMIT
    assert trigger()["dispatched"] == 1
    first = live_sync(ws)
    assert first["status"] == "refeed", first
    job = jobs().active(ws)
    assert job is not None and job.status == JobStatus.QUEUED
    assert not jobs().live_sync_enabled(ws), "while the re-feed job owns the workspace, no live sync runs"
    assert live_sync(ws)["status"] == "skipped"
    assert trigger()["dispatched"] == 0, "nothing more is queued while the job owns it"
    [stuck] = stuck_workspaces(0)
    assert stuck["workspace_id"] == ws and f"job {job.id} queued" in stuck["why"]

    vectorize(ws, task_id="the-refeed", job_id=job.id)
    assert_index_equals_visible(ws)
    assert {f"issues:{row['id']}" for row in new} <= ledger_ids(ws)
    assert not search("Big project item", ws, mode="text", limit=50, all_projects=True)
    colleague = big_project["plane"].user()["id"]
    private = {f"pages:{page['id']}" for page in big_project["team_pages"][:2]}
    seen = {hit.document_id for hit in search("Team page", ws, mode="text", user_id=colleague, limit=50, all_projects=True)}
    assert not seen & private, "pages made private are hidden from everyone but their owner"
    owner = big_project["owner"]["id"]
    owner_sees = {hit.document_id for hit in search("Team page", ws, mode="text", user_id=owner, limit=50, all_projects=True)}
    assert private <= owner_sees

    assert paths(settle()) == ["success"], "live sync resumed: the finished job left the workspace to be measured once"
    assert not stuck_workspaces(0), "nothing pending"
    # every later change is picked up again by live sync
    plane.update(schema.issues, new[0]["id"], name="Quetzal renamed after the re-feed")
    assert paths(settle()) == ["success"]
    assert search("Quetzal", ws, mode="text", all_projects=True)


def test_bulk_unarchive_and_bulk_move_to_triage_converge(big_project) -> None:
    ws, plane = big_project["workspace_id"], big_project["plane"]
    plane.archive(schema.projects, big_project["big"]["id"])
    settle()
    assert_index_equals_visible(ws)

    plane.update(schema.projects, big_project["big"]["id"], archived_at=None)
    ticks = settle()
    assert paths(ticks)[0] == "refeed"
    assert_index_equals_visible(ws)
    assert len(ledger_ids(ws)) == 42 + 15 + 4 + 1

    # 42 items moved to triage (hidden), plus 10 project pages made private: 52 pending, above the limit
    for row in big_project["issues"][3:]:
        plane.update(schema.issues, row["id"], state_id=big_project["triage"]["id"])
    for page in big_project["pages"][:10]:
        plane.update(schema.pages, page["id"], access=1)
    ticks = settle()
    assert paths(ticks)[0] == "refeed"
    assert_index_equals_visible(ws)
    assert not ledger_ids(ws) & {f"issues:{row['id']}" for row in big_project["issues"]}


def test_an_import_of_500_items_converges(big_project) -> None:
    ws, plane = big_project["workspace_id"], big_project["plane"]
    project = big_project["small"]
    rows = [plane.issue_values(project, f"Imported item {n}", f"<p>imported {n}</p>", sequence_id=100 + n) for n in range(500)]
    plane.insert_many(schema.issues, rows)
    ticks = settle()
    assert paths(ticks)[0] == "refeed"
    assert_index_equals_visible(ws)
    assert len(search("Imported item", ws, mode="text", limit=10, all_projects=True)) == 10


def test_small_changes_go_to_live_sync_and_quiet_workspaces_get_no_task(big_project) -> None:
    ws, plane = big_project["workspace_id"], big_project["plane"]
    assert trigger()["dispatched"] == 0
    for row in big_project["issues"][3:8]:
        plane.update(schema.issues, row["id"], name=row["name"] + " v2")
    assert pending_changes(ws, sources(), LIMIT) == 5
    assert trigger()["dispatched"] == 1
    assert live_sync(ws)["pending"] == 5
    assert pending_changes(ws, sources(), LIMIT) == 0, "re-reading the overlap window is not pending work"
    assert trigger()["dispatched"] == 0, "the live sync found it caught up and cleared the flag"


def test_a_failed_refeed_is_visible_as_stuck_with_its_reason(big_project, pi_env) -> None:
    ws, plane = big_project["workspace_id"], big_project["plane"]
    plane.archive(schema.projects, big_project["big"]["id"])
    trigger()
    assert live_sync(ws)["status"] == "refeed"
    job = jobs().active(ws)
    assert jobs().claim(ws, "doomed", job.id).claimed
    jobs().finish(job.id, "doomed", JobStatus.FAILED, "RuntimeError: the sink refused everything")
    [stuck] = stuck_workspaces(0)
    assert stuck["workspace_id"] == ws and "failed" in stuck["why"] and "sink refused" in stuck["why"]
    assert stuck_workspaces(3600) == []


# ---------------------------------------------------------------------- through a real worker (the issue's reproduction)
@pytest.mark.slow
def test_archiving_a_60_item_project_converges_through_a_real_worker(plane_db, postgres_url, rabbitmq_url, pi_env, tmp_path):
    """RabbitMQ, PostgreSQL, interval 2 s, default PI_LIVE_SYNC_MAX_MISSING=50: the freeze the issue found, and convergence."""
    env = {
        "PI_DATA_DIR": str(tmp_path / "pi-data"),
        "PI_DATABASE_URL": postgres_url,
        "PLANE_DATABASE_URL": plane_db.url,
        "CELERY_BROKER_URL": rabbitmq_url,
        "CELERY_DEFAULT_QUEUE": f"pi_test_{uuid.uuid4().hex}",
        "PI_EMBEDDER": "hashing",
        "PI_SINKS": "embedded",
        "CELERY_VECTOR_SYNC_INTERVAL": "2",
        "PI_REDISPATCH_INTERVAL": "2",
        "HF_HUB_OFFLINE": "1",
    }
    pi_env(**env)
    create_app()  # this process sends through RabbitMQ too (the current app)
    owner = plane_db.user()
    workspace = plane_db.workspace(owner)
    big, other = plane_db.project(workspace, identifier="BIG"), plane_db.project(workspace, identifier="OPS")
    for n in range(45):
        plane_db.issue(big, f"Big item {n}", state=None)
    for n in range(15):
        plane_db.page(workspace, owner=owner, name=f"Big page {n}", projects=(big,))
    team = [plane_db.page(workspace, owner=owner, name=f"Team page {n}") for n in range(3)]
    workspace_id = workspace["id"]
    worker = WorkerProcess(env, tmp_path / "worker.log", beat=True, concurrency=2)
    try:
        worker.wait_ready()
        request_vectorization(workspace_id)
        wait_for(lambda: jobs().live_sync_enabled(workspace_id), 120, 0.2, "the workspace vectorized")

        plane_db.archive(schema.projects, big["id"])
        new = [plane_db.issue(other, f"Created after the archive {n}") for n in range(2)]
        plane_db.update(schema.pages, team[0]["id"], access=1)
        started = time.monotonic()
        wait_for(lambda: not any(index_report(workspace_id).values()), 60, 0.2, "the index to equal the visible set")
        converged = time.monotonic() - started
        assert {f"issues:{row['id']}" for row in new} <= ledger_ids(workspace_id)
        colleague = plane_db.user()["id"]
        hits = search("Team page 0", workspace_id, mode="text", user_id=colleague, all_projects=True, limit=50)
        assert f"pages:{team[0]['id']}" not in {hit.document_id for hit in hits}, "made private: only its owner finds it"
        assert converged < 30, f"converged in {converged:.1f} s"
        assert not stuck_workspaces(0) or wait_for(lambda: not stuck_workspaces(0), 20, 0.5, "no workspace left behind")
    finally:
        worker.stop()
