"""The plan sync against Plane's real schema on PostgreSQL: downgrade, onboarding, idempotence."""

from __future__ import annotations

from pi_plans.sync import sync_plans

from pi_framework.db.models import JobStatus
from pi_framework.plane import schema

NOTHING = {"downgraded": 0, "documents_removed": 0, "onboarded": 0, "errors": 0}


def changes(result: dict) -> dict:
    return {name: result[name] for name in NOTHING}


def test_onboarding_queues_one_job_per_vectorized_workspace_and_respects_the_cap(world, pi_env):
    pi_env(PI_MAX_CONCURRENT_VECTORIZATIONS=2)
    pro, business, lower = world.workspace("PRO"), world.workspace("BUSINESS"), world.workspace("pro")
    free, unlicensed = world.workspace("FREE"), world.workspace(plan=None)

    result = sync_plans()
    assert changes(result) == {**NOTHING, "onboarded": 3}
    assert result["workspaces_with_plan"] == 4 and result["vectorized_plans"] == 3
    for workspace_id in (pro, business, lower):
        [job] = world.jobs(workspace_id)
        assert job.status == JobStatus.QUEUED
    assert world.jobs(free) == [] and world.jobs(unlicensed) == []
    dispatched = [job for ws in (pro, business, lower) for job in world.jobs(ws) if job.alive_at is not None]
    assert len(dispatched) == 2 == world.broker_messages(), "only PI_MAX_CONCURRENT_VECTORIZATIONS tasks are sent"

    assert changes(sync_plans()) == NOTHING, "a second pass changes nothing"
    assert world.broker_messages() == 2

    ran = world.run_queued_jobs()
    assert {result["status"] for result in ran.values()} == {JobStatus.SUCCESS}
    for workspace_id in (pro, business, lower):
        assert world.sink_chunks(workspace_id) > 0
    assert world.sink_chunks(free) == 0
    assert changes(sync_plans()) == NOTHING


def test_vectorized_plans_setting_is_case_insensitive(world, pi_env):
    one, pro = world.workspace("One"), world.workspace("PRO")
    pi_env(PI_VECTORIZED_PLANS="one, enterprise")
    assert changes(sync_plans()) == {**NOTHING, "onboarded": 1}
    assert len(world.jobs(one)) == 1 and world.jobs(pro) == []


def test_downgrade_removes_the_workspace_and_nothing_of_another(world):
    kept, dropped = world.workspace("PRO", issues=4), world.workspace("BUSINESS", issues=3)
    sync_plans()
    world.run_queued_jobs()
    kept_chunks, dropped_chunks = world.sink_chunks(kept), world.sink_chunks(dropped)
    assert kept_chunks >= 4 and dropped_chunks >= 3
    kept_ledger = world.ledger(kept)

    world.set_plan(dropped, "free")
    result = sync_plans()
    assert changes(result) == {**NOTHING, "downgraded": 1, "documents_removed": 3}
    assert world.sink_chunks(dropped) == 0 and world.ledger(dropped) == (0, 0)
    assert not any(job.live_sync_enabled for job in world.jobs(dropped)), "live sync is off"
    assert world.sink_chunks(kept) == kept_chunks, "the other workspace's chunks are untouched in the sink"
    assert world.ledger(kept) == kept_ledger
    assert world.jobs(kept)[-1].live_sync_enabled

    assert changes(sync_plans()) == NOTHING, "a second pass changes nothing"


def test_no_plan_row_and_soft_deleted_licence_or_workspace_downgrade(world):
    gone_row, deleted_licence, deleted_workspace = (world.workspace("PRO", issues=1) for _ in range(3))
    sync_plans()
    world.run_queued_jobs()

    world.drop_licence(gone_row)
    with world.plane.engine.connect() as connection:
        licence_id = connection.execute(
            schema.workspace_licenses.select().where(schema.workspace_licenses.c.workspace_id == deleted_licence)
        ).first()
    world.plane.soft_delete(schema.workspace_licenses, licence_id.id)
    world.plane.soft_delete(schema.workspaces, deleted_workspace)

    assert changes(sync_plans()) == {**NOTHING, "downgraded": 3, "documents_removed": 3}
    for workspace_id in (gone_row, deleted_licence, deleted_workspace):
        assert world.sink_chunks(workspace_id) == 0
    assert changes(sync_plans()) == NOTHING


def test_downgrade_cancels_a_job_that_has_not_run(world):
    workspace_id = world.workspace("PRO")
    sync_plans()
    world.set_plan(workspace_id, "FREE")
    assert changes(sync_plans()) == {**NOTHING, "downgraded": 1}
    [job] = world.jobs(workspace_id)
    assert job.status == JobStatus.CANCELLED and "plan FREE is not vectorized" in job.error
    assert world.run_queued_jobs() == {}
    assert world.sink_chunks(workspace_id) == 0


def test_upgrade_downgrade_reupgrade_leaves_exactly_one_consistent_index(world):
    workspace_id = world.workspace("FREE", issues=6)
    other = world.workspace("PRO", issues=2)
    sync_plans()
    world.run_queued_jobs()
    assert world.sink_chunks(workspace_id) == 0

    world.set_plan(workspace_id, "PRO")
    assert changes(sync_plans()) == {**NOTHING, "onboarded": 1}
    world.run_queued_jobs()
    first = world.sink_chunks(workspace_id), world.ledger(workspace_id)
    assert first[0] > 0 and first[1][0] == 6

    world.set_plan(workspace_id, "FREE")
    assert changes(sync_plans()) == {**NOTHING, "downgraded": 1, "documents_removed": 6}
    assert world.sink_chunks(workspace_id) == 0

    world.set_plan(workspace_id, "Pro")
    assert changes(sync_plans()) == {**NOTHING, "onboarded": 1}
    world.run_queued_jobs()
    again = world.sink_chunks(workspace_id), world.ledger(workspace_id)
    assert again == first, "the same chunks, once each, in the sink and the ledger"
    assert again[0] == again[1][1], "every ledger chunk is in the sink and nothing more"
    assert world.jobs(workspace_id)[-1].live_sync_enabled
    assert world.ledger(other)[0] == 2
    assert changes(sync_plans()) == NOTHING


def test_without_a_plan_source_nothing_is_downgraded(world, pi_env):
    workspace_id = world.workspace("PRO")
    sync_plans()
    world.run_queued_jobs()
    chunks = world.sink_chunks(workspace_id)
    pi_env(PLANE_DATABASE_URL=None)
    assert sync_plans() == {"status": "skipped"}
    assert world.sink_chunks(workspace_id) == chunks
