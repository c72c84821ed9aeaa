"""A live-sync tick costs O(changes), not O(workspaces) (PostgreSQL, Plane's schema).

The per-workspace cursors stay the source of truth; the global scan only says which workspaces to measure.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete

from pi_framework.db import get_database
from pi_framework.db.models import JobStatus, SyncState, utcnow
from pi_framework.plane import schema
from pi_framework.search import search
from pi_framework.sync import current_jobs, current_leases, state
from pi_framework.sync.leases import workspace_lease
from pi_framework.sync.live import live_sync
from pi_framework.sync.trigger import TICK_LEASE, trigger
from pi_framework.sync.vectorize import vectorize
from pi_framework.testing.integrity import settle, statements


@pytest.fixture
def hashing(plane_settings, pi_env):
    return pi_env(PI_EMBEDDER="hashing")


def vectorized_workspaces(plane_db, count: int) -> list[str]:
    ids = []
    for n in range(count):
        workspace = plane_db.workspace()
        project = plane_db.project(workspace, identifier=f"P{n}")
        plane_db.issue(project, f"Issue of workspace {n}")
        assert vectorize(workspace["id"])["status"] == JobStatus.SUCCESS
        ids.append(workspace["id"])
    return ids


def test_a_quiet_tick_costs_the_same_statements_for_3_or_12_workspaces_and_queues_nothing(plane_db, hashing) -> None:
    measured = {}
    for count in (3, 12):
        vectorized_workspaces(plane_db, count if not measured else count - 3)
        settle()
        with statements() as seen:
            counts = trigger()
        assert counts == {"dispatched": 0, "flagged": 0, "busy": 0, "queued": 0, "failed": 0}
        measured[count] = len(seen)
    assert measured[3] == measured[12], measured


def test_only_the_changed_workspace_is_measured_and_synced(plane_db, hashing) -> None:
    workspaces = vectorized_workspaces(plane_db, 4)
    settle()
    edited = workspaces[2]
    with plane_db.engine.begin() as connection:
        issue_id = connection.execute(
            schema.issues.select().where(schema.issues.c.workspace_id == edited).with_only_columns(schema.issues.c.id)
        ).scalar_one()
    plane_db.update(schema.issues, issue_id, name="Renamed quokka")
    counts = trigger()
    assert counts["dispatched"] == 1 and counts["flagged"] == 1, "only the changed workspace"
    live_sync(edited)
    assert search("quokka", edited, mode="text", all_projects=True)
    settle()


def test_a_change_seen_while_its_workspace_is_busy_is_measured_again_next_tick(plane_db, hashing) -> None:
    (workspace_id,) = vectorized_workspaces(plane_db, 1)
    settle()
    with plane_db.engine.begin() as connection:
        issue_id = connection.execute(
            schema.issues.select().where(schema.issues.c.workspace_id == workspace_id).with_only_columns(schema.issues.c.id)
        ).scalar_one()
    assert current_leases().acquire(workspace_lease(workspace_id), "live:long-running")
    plane_db.update(schema.issues, issue_id, name="Edited during a long sync")
    assert trigger()["busy"] == 1
    current_leases().release(workspace_lease(workspace_id), "live:long-running")
    assert trigger()["dispatched"] == 1, "the global scan saw it once; the marker keeps it a candidate"


def test_changes_made_while_a_vectorization_runs_are_synced_after_it(plane_db, hashing) -> None:
    (workspace_id,) = vectorized_workspaces(plane_db, 1)
    settle()
    job_id = current_jobs().request(workspace_id, dispatch=False)
    with plane_db.engine.begin() as connection:
        issue_id = connection.execute(
            schema.issues.select().where(schema.issues.c.workspace_id == workspace_id).with_only_columns(schema.issues.c.id)
        ).scalar_one()
    plane_db.update(schema.issues, issue_id, name="Edited before the job reads it")
    assert trigger()["dispatched"] == 0, "the job owns the workspace"
    assert vectorize(workspace_id, task_id="job", job_id=job_id)["status"] == JobStatus.SUCCESS
    assert state.load(state.PENDING, workspace_id) is not None, "the finished job leaves the workspace to be measured"
    settle()
    assert state.load(state.PENDING, workspace_id) is None


def test_a_tick_that_dies_after_its_scan_loses_no_change(plane_db, hashing, monkeypatch) -> None:
    (workspace_id,) = vectorized_workspaces(plane_db, 1)
    settle()
    with plane_db.engine.begin() as connection:
        issue_id = connection.execute(
            schema.issues.select().where(schema.issues.c.workspace_id == workspace_id).with_only_columns(schema.issues.c.id)
        ).scalar_one()
    plane_db.update(schema.issues, issue_id, name="Edited just before a tick dies")

    def dies(*_args, **_kwargs):  # noqa: ANN002, ANN003, ANN202
        raise ConnectionError("the PI database went away mid-tick")

    with monkeypatch.context() as patch:
        patch.setattr(state, "flag", dies)
        with pytest.raises(ConnectionError):
            trigger()
    assert trigger()["dispatched"] == 1, "the watermark did not move past a change nobody flagged"


def test_ticks_never_overlap(plane_db, hashing) -> None:
    vectorized_workspaces(plane_db, 1)
    assert current_leases().acquire(TICK_LEASE, "a-tick-still-running")
    assert trigger()["skipped"] == 1
    current_leases().release(TICK_LEASE, "a-tick-still-running")
    assert "skipped" not in trigger()


def test_the_first_tick_after_an_upgrade_starts_from_the_oldest_cursor_not_every_workspace(plane_db, hashing) -> None:
    workspaces = []
    for n in range(3):
        workspace = plane_db.workspace()
        project = plane_db.project(workspace, identifier=f"U{n}")
        issue = plane_db.issue(project, f"Issue of workspace {n}")
        for table, row_id in ((schema.issues, issue["id"]), (schema.projects, project["id"])):  # long before any cursor
            plane_db.update(table, row_id, updated_at=utcnow() - timedelta(days=1))
        assert vectorize(workspace["id"])["status"] == JobStatus.SUCCESS
        workspaces.append((workspace["id"], issue["id"]))
    settle()
    with get_database().session() as session:  # a database from before the global scan existed
        session.execute(delete(SyncState).where(SyncState.source.startswith("global-scan:")))
    plane_db.update(schema.issues, workspaces[1][1], name="Edited while no global watermark existed")
    counts = trigger()
    assert counts["dispatched"] == 1 and counts["flagged"] == 1, counts
