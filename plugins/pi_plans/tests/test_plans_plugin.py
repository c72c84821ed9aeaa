"""pi_plans as a plugin: the hook can be replaced, a failing plan source changes nothing, task, beat, CLI, worker."""

from __future__ import annotations

import socket
import uuid

import pytest
from click.testing import CliRunner
from pi_plans.sync import sync_plans

from pi_framework import hookimpl, runtime
from pi_framework.celery_app import create_app
from pi_framework.cli import build_cli
from pi_framework.db import get_database
from pi_framework.db.models import JobStatus
from pi_framework.plane import reset_plane_engine
from pi_framework.sync.jobs import JobLost, Jobs
from pi_framework.worker_process import WorkerProcess, wait_for


def test_another_plugin_answering_workspace_plans_replaces_workspace_licenses(world, register_plugin):
    in_plane_free, elsewhere_pro = world.workspace("FREE"), world.workspace(plan=None)

    class BillingService:
        @hookimpl
        def workspace_plans(self, settings):
            return iter([(in_plane_free, "free"), (elsewhere_pro, "business")])

    register_plugin(BillingService(), "billing_service")
    sync_plans()
    assert world.jobs(in_plane_free) == [] and len(world.jobs(elsewhere_pro)) == 1


def test_an_unreachable_plan_source_changes_nothing(world, pi_env):
    workspace_id = world.workspace("PRO")
    sync_plans()
    world.run_queued_jobs()
    chunks = world.sink_chunks(workspace_id)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reset_plane_engine()
    pi_env(PLANE_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/plane")
    with pytest.raises(Exception, match="refused|could not connect"):
        sync_plans()
    assert world.sink_chunks(workspace_id) == chunks
    assert world.jobs(workspace_id)[-1].live_sync_enabled


def test_a_running_vectorization_stops_once_its_workspace_is_downgraded(world):
    workspace_id = world.workspace("PRO")
    sync_plans()
    jobs = Jobs(get_database(), runtime.get_registry().settings)
    claim = jobs.claim(workspace_id, "task-1")
    assert claim.claimed
    world.set_plan(workspace_id, "FREE")
    assert sync_plans()["downgraded"] == 1
    with pytest.raises(JobLost):
        jobs.heartbeat(claim.job_id, "task-1", 1, 3)
    assert world.jobs(workspace_id)[-1].status == JobStatus.CANCELLED


def test_task_beat_entry_and_switch(pi_env):
    app = create_app(pi_env(CELERY_WORKSPACE_PLAN_SYNC_INTERVAL=600))
    assert "pi.celery_app.workspace_plan_sync" in app.tasks
    entry = app.conf.beat_schedule["workspace-plan-sync"]
    assert (entry["task"], entry["schedule"]) == ("pi.celery_app.workspace_plan_sync", 600)
    assert "workspace-plan-sync" not in create_app(pi_env(CELERY_WORKSPACE_PLAN_SYNC_ENABLED="false")).conf.beat_schedule


def test_plan_sync_command_with_dry_run(world):
    pro, free = world.workspace("PRO"), world.workspace("FREE")
    runner = CliRunner()
    dry = runner.invoke(build_cli(), ["plan-sync", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"onboard   {pro}" in dry.output and free not in dry.output
    assert world.jobs(pro) == [], "a dry run changes nothing"
    real = runner.invoke(build_cli(), ["plan-sync"])
    assert real.exit_code == 0 and '"onboarded": 1' in real.output
    assert len(world.jobs(pro)) == 1


@pytest.mark.slow
def test_upgrade_and_downgrade_through_a_worker(world, pi_env, rabbitmq_url, tmp_path):
    """Real worker, RabbitMQ, real model: the plan sync onboards, the worker vectorizes, a downgrade empties the index."""
    workspace_id = world.workspace("PRO", issues=3)
    env = {
        "PI_DATA_DIR": str(world.settings.PI_DATA_DIR),
        "PI_DATABASE_URL": world.plane.url,
        "PLANE_DATABASE_URL": world.plane.url,
        "PI_SINKS": "embedded",
        "PI_EMBEDDER": "fastembed",
        "CELERY_BROKER_URL": rabbitmq_url,
        "CELERY_DEFAULT_QUEUE": f"pi_test_{uuid.uuid4().hex}",
        "HF_HUB_OFFLINE": "1",
    }
    app = create_app(pi_env(**env))
    worker = WorkerProcess(env, tmp_path / "worker.log", pool="solo")
    try:
        worker.wait_ready()
        app.send_task("pi.celery_app.workspace_plan_sync")
        wait_for(lambda: [job.status for job in world.jobs(workspace_id)] == [JobStatus.SUCCESS], 120, message="vectorized")
        assert world.sink_chunks(workspace_id) >= 3 and world.ledger(workspace_id)[0] == 3

        world.set_plan(workspace_id, "FREE")
        app.send_task("pi.celery_app.workspace_plan_sync")
        wait_for(lambda: world.ledger(workspace_id) == (0, 0), 60, message="downgraded")
        assert world.sink_chunks(workspace_id) == 0
    finally:
        worker.stop()
