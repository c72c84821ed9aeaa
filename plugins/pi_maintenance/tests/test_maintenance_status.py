"""``pi status``: the latest job of each workspace with progress, last live sync, docs SHA per repository."""

from __future__ import annotations

import json
from datetime import timedelta

from click.testing import CliRunner

from pi_framework import runtime
from pi_framework.api import hookimpl
from pi_framework.cli import build_cli
from pi_framework.db.models import JobStatus, SyncState, utcnow


class DocsRows:
    """Reserves the docs plugin's ``sync_states`` name as pi_docs does (it may not be installed with this plugin)."""

    @hookimpl
    def register_state_names(self, register):
        register("docs")


def test_status_shows_jobs_by_workspace_live_sync_and_docs_sha(pi_db, add_job, register_plugin):
    if "docs" not in runtime.get_registry().reserved_state_names:
        register_plugin(DocsRows(), "docs_rows")
    live_at = utcnow() - timedelta(minutes=3)
    add_job("ws-a", JobStatus.FAILED, created=timedelta(days=3), error="boom")
    add_job(
        "ws-a",
        JobStatus.SUCCESS,
        created=timedelta(days=2),
        live_sync_enabled=True,
        last_live_sync_at=live_at,
        progress_done=120,
        progress_total=120,
    )
    add_job(
        "ws-b",
        JobStatus.RUNNING,
        started=timedelta(minutes=5),
        heartbeat=timedelta(seconds=10),
        progress_done=40,
        progress_total=100,
    )
    with pi_db.session() as session:
        session.add(SyncState(source="docs", scope="makeplane/docs", cursor={"sha": "abc123", "etag": "W/x"}))
        session.add(SyncState(source="issues", scope="ws-b", cursor={"watermark": "x"}))

    runner = CliRunner()
    result = runner.invoke(build_cli(), ["status", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["jobs"] == {"failed": 1, "success": 1, "running": 1}
    a, b = report["workspaces"]
    assert (a["workspace_id"], a["status"], a["live_sync_enabled"], a["jobs"]) == (
        "ws-a",
        "success",
        True,
        {"failed": 1, "success": 1},
    )
    assert a["last_live_sync_at"] == live_at.isoformat()
    assert (b["workspace_id"], b["status"], b["progress_done"], b["progress_total"]) == ("ws-b", "running", 40, 100)
    assert report["docs"] == [{"repo": "makeplane/docs", "sha": "abc123", "updated_at": report["docs"][0]["updated_at"]}]

    text = runner.invoke(build_cli(), ["status"]).output
    assert "jobs: failed=1 running=1 success=1" in text
    assert "40/100" in text and "120/120" in text
    assert "docs makeplane/docs: abc123" in text

    only_b = json.loads(runner.invoke(build_cli(), ["status", "--workspace", "ws-b", "--json"]).output)
    assert [row["workspace_id"] for row in only_b["workspaces"]] == ["ws-b"]


def test_status_shows_a_model_change_in_progress(pi_db, add_job):
    """An index generation being built for a model change: how far its copy got, and why it is stuck if it is."""
    from pi_framework.db import generations

    add_job("ws-a", JobStatus.SUCCESS)
    generations.snapshot(pi_db, "hashing", "hashing-v1")  # the live generation, as the first writer records it
    building = generations.start(pi_db, "hashing", "hashing-256")
    generations.note_error(pi_db, building.name, "SinkError: disk full")
    runner = CliRunner()
    report = json.loads(runner.invoke(build_cli(), ["status", "--json"]).output)
    assert [(row["generation"], row["status"], row["model"]) for row in report["generations"]] == [
        ("g1", "live", "hashing-v1"),
        ("g2", "building", "hashing-256"),
    ]
    text = runner.invoke(build_cli(), ["status"]).output
    assert "index generation g1: live, hashing hashing-v1" in text
    assert "index generation g2: building, hashing hashing-256, 0/1 scopes copied (0 chunks); the copy fails: SinkError: disk full" in text
