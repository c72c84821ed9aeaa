"""pi_comments end to end through a real Celery worker with beat on the embedded broker: the worker's beat dispatches
the vectorization, then live sync makes a new comment searchable and a deleted work item's comments leave search."""

from __future__ import annotations

import uuid

import pytest

from pi_framework.api import JobStatus, jobs, plane_schema, search
from pi_framework.testing.worker import WorkerProcess, wait_for

pytestmark = pytest.mark.slow


class JobFailed(RuntimeError):
    """The vectorization failed: waiting longer cannot help."""


def found(query: str, workspace_id: str, user_id: str) -> set[str]:
    hits = search(query, workspace_id, kinds=["comments"], user_id=user_id, mode="text", limit=20)
    return {hit.document_id for hit in hits}


def test_a_worker_indexes_a_new_comment_and_drops_the_comments_of_a_deleted_work_item(
    plane_db, add_comment, plane_settings, pi_env, tmp_path
) -> None:
    env = {
        "PI_DATA_DIR": str(tmp_path / "pi-data"),  # pi_env's: this process searches what the worker indexed
        "PLANE_DATABASE_URL": plane_db.url,
        "CELERY_DEFAULT_QUEUE": f"pi_comments_{uuid.uuid4().hex}",
        "CELERY_VECTOR_SYNC_INTERVAL": "1",
        "PI_REDISPATCH_INTERVAL": "1",
        "PI_EMBEDDER": "hashing",
        "PI_ACCESS_CACHE_TTL": "0",
        "HF_HUB_OFFLINE": "1",
    }
    pi_env(**env)  # no CELERY_BROKER_URL: the embedded broker, a SQLite file under PI_DATA_DIR
    member = plane_db.user()
    workspace = plane_db.workspace(member)
    plane_db.workspace_member(workspace, member)
    project = plane_db.project(workspace, identifier="WEB")
    plane_db.project_member(project, member)
    item = plane_db.issue(project, "Checkout button does nothing")
    old = add_comment(item, "<p>Reproduced on Safari: the payment sheet never opens.</p>", member)
    workspace_id = workspace["id"]

    worker = WorkerProcess(env, tmp_path / "worker.log", beat=True)
    try:
        worker.wait_ready()
        jobs().request(workspace_id, dispatch=False)  # queued only: the worker's redispatch pass sends it

        def vectorized() -> bool:
            job = jobs().latest(workspace_id)
            if job.status == JobStatus.FAILED:
                raise JobFailed(f"vectorization failed: {job.error}\n{worker.log()[-4000:]}")
            return job.status == JobStatus.SUCCESS and job.live_sync_enabled

        wait_for(vectorized, 120, 0.2, "the worker's vectorization", fatal=JobFailed)
        assert found("payment sheet safari", workspace_id, member["id"]) == {f"comments:{old['id']}"}

        new = add_comment(item, "<p>Rolled back the quetzalcoatl canary.</p>", member)
        wait_for(
            lambda: found("quetzalcoatl canary", workspace_id, member["id"]) == {f"comments:{new['id']}"},
            60,
            0.2,
            "the new comment searchable",
        )
        (hit,) = search("quetzalcoatl canary", workspace_id, kinds=["comments"], user_id=member["id"], mode="text")
        assert hit.title == "Comment on WEB-1: Checkout button does nothing" and hit.key == "WEB-1"

        plane_db.soft_delete(plane_schema.issues, item["id"])
        wait_for(
            lambda: (
                not found("quetzalcoatl canary", workspace_id, member["id"])
                and not found("payment sheet safari", workspace_id, member["id"])
            ),
            60,
            0.2,
            "the deleted work item's comments gone from search",
        )
    finally:
        worker.stop()
