"""What the plugin contributes: task, beat entry, health check, and ``pi feed-docs`` / ``python -m pi_framework.manage``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import REPO, indexed_ids
from pi_docs import JOB_NAME, TASK_NAME
from pi_docs.tasks import docs_health, sync_docs_periodic_task
from test_sync import DOCS

from pi_framework import runtime
from pi_framework.celery_app import _beat_schedule
from pi_framework.cli import build_cli


def test_task_and_beat_entry_are_registered(docs_settings):
    docs_settings(CELERY_DOCS_SYNC_INTERVAL="3600")
    registry = runtime.get_registry()
    assert TASK_NAME in registry.tasks and registry.owner[("task", TASK_NAME)] == "pi_docs"
    job = registry.periodic_jobs[JOB_NAME]
    assert job.enabled and job.every == 3600 and job.task == TASK_NAME
    assert _beat_schedule(registry)[JOB_NAME]["task"] == TASK_NAME
    assert "docs" in registry.health_checks


def test_beat_entry_is_off_when_disabled(docs_settings):
    docs_settings(CELERY_DOCS_SYNC_ENABLED="0")
    registry = runtime.get_registry()
    assert registry.periodic_jobs[JOB_NAME].enabled is False
    assert JOB_NAME not in _beat_schedule(registry)


def test_task_returns_totals_and_health_reports_the_sha(docs_settings, git_repo):
    docs_settings()
    sha = git_repo.commit("docs", DOCS)
    assert docs_health()["never_synced"] == [f"{REPO}@HEAD"]
    totals = sync_docs_periodic_task()
    assert totals == {
        "repos": 1,
        "synced": 1,
        "unchanged": 0,
        "failed": 0,
        "added": 3,
        "updated": 0,
        "removed": 0,
        "api_calls": 5,
    }
    assert docs_health()["repos"][f"{REPO}@HEAD"]["sha"] == sha
    assert sync_docs_periodic_task()["unchanged"] == 1


def test_feed_docs_command(docs_settings, git_repo, fake_github):
    docs_settings()
    git_repo.commit("docs", DOCS)
    runner = CliRunner()
    result = runner.invoke(build_cli(), ["feed-docs", "--repo", REPO])
    assert result.exit_code == 0, result.output
    assert f"{REPO}@HEAD: synced (full) added=3 updated=0 removed=0" in result.output
    assert "total: 1 repositories, added 3, updated 0, removed 0, 0 failed, 5 API calls" in result.output
    (git_repo.path / "notes.txt").unlink()
    git_repo.commit("rm")
    result = runner.invoke(build_cli(), ["feed-docs", "--full"])
    assert result.exit_code == 0, result.output
    assert "synced (full) added=0 updated=0 removed=1 unchanged=2" in result.output
    assert len(indexed_ids()) == 2


def test_feed_docs_exits_1_when_a_repository_fails(docs_settings, git_repo):
    docs_settings(PI_DOCS_REPOS=f"acme/missing,{REPO}")
    git_repo.commit("docs", DOCS)
    result = CliRunner().invoke(build_cli(), ["feed-docs"])
    assert result.exit_code == 1
    assert (
        "acme/missing@HEAD: failed (none) - docs repository acme/missing: repository or branch 'HEAD' not found (404)"
        in result.output
    )
    assert f"{REPO}@HEAD: synced" in result.output


@pytest.mark.slow
def test_manage_feed_docs(docs_settings, git_repo):
    docs_settings()
    git_repo.commit("docs", DOCS)
    done = subprocess.run(
        [sys.executable, "-m", "pi_framework.manage", "feed-docs"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "total: 1 repositories, added 3" in done.stdout
    assert len(indexed_ids()) == 3


def test_prune_removes_docs_of_repositories_no_longer_configured(docs_settings, git_repo, fake_github, tmp_path):
    from fake_github import GitRepo

    other = GitRepo(tmp_path / "other")
    other.commit("docs", {"guide.md": "# Guide\n", "docs/keep.md": "# Keep\n"})
    fake_github.add_repo("acme/other", other)
    git_repo.commit("docs", DOCS)
    docs_settings(PI_DOCS_REPOS=f"{REPO},acme/other")
    assert CliRunner().invoke(build_cli(), ["feed-docs"]).exit_code == 0
    assert len(indexed_ids()) == 5
    docs_settings(PI_DOCS_REPOS="acme/other:docs")
    result = CliRunner().invoke(build_cli(), ["feed-docs", "--prune"])
    assert result.exit_code == 0, result.output
    assert "pruned: 4 document(s)" in result.output
    assert indexed_ids() == {"docs:acme/other:docs/keep.md"}


def test_health_lists_failing_repositories(docs_settings, git_repo):
    docs_settings(PI_DOCS_REPOS=f"acme/missing,{REPO}")
    git_repo.commit("docs", DOCS)
    sync_docs_periodic_task()
    report = docs_health()
    assert report["failing"] == ["acme/missing@HEAD"] and "404" in report["repos"]["acme/missing@HEAD"]["last_error"]
    assert report["never_synced"] == ["acme/missing@HEAD"] and report["repos"][f"{REPO}@HEAD"]["last_error"] is None
