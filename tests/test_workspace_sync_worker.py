"""Workspace sync with a real Celery worker and beat on the embedded broker (the broker that loses messages).

* a vectorization publishes PROGRESS, is killed mid-way (SIGKILL of the pool process), is re-queued
  by the ``redispatch-lost-jobs`` beat entry and resumes without re-embedding what was indexed;
  then beat's live sync makes an edit searchable and a deletion disappear;
* a duplicate dispatch while a job runs does not start a second run.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from pi_framework.celery_app import create_app
from pi_framework.db import get_database
from pi_framework.db.models import IndexedDocument, JobStatus, WorkspaceVectorization
from pi_framework.plane import schema
from pi_framework.plane.sample import sample_issue
from pi_framework.search import search
from pi_framework.sync.dispatch import VECTORIZE_TASK
from pi_framework.sync.jobs import Jobs
from pi_framework.worker_process import WorkerProcess, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def worker_env(plane_db, plane_settings, pi_env, tmp_path):
    env = {
        "PI_DATA_DIR": str(tmp_path / "pi-data"),
        "PLANE_DATABASE_URL": plane_db.url,
        "CELERY_DEFAULT_QUEUE": f"pi_test_{uuid.uuid4().hex}",
        "CELERY_RESULT_BACKEND": f"db+sqlite:///{tmp_path / 'results.sqlite'}",
        "PI_HEARTBEAT_TIMEOUT_SECONDS": "8",
        "PI_REDISPATCH_INTERVAL": "1",
        "CELERY_VECTOR_SYNC_INTERVAL": "1",
        "PI_EMBEDDING_BATCH_SIZE": "16",
        "HF_HUB_OFFLINE": "1",
    }
    pi_env(**env)
    return env


def workspace_with_issues(plane_db, count: int):
    workspace = plane_db.workspace()
    project = plane_db.project(workspace, identifier="WEB")
    issues = [plane_db.issue(project, *sample_issue(n), sequence_id=n + 1) for n in range(count)]
    return workspace["id"], issues


def job_of(workspace_id: str) -> WorkspaceVectorization:
    return Jobs(get_database(), get_database().settings).latest(workspace_id)


def ledger_count(workspace_id: str) -> int:
    with get_database().session() as session:
        return len(session.scalars(select(IndexedDocument.document_id).where(IndexedDocument.workspace_id == workspace_id)).all())


def model_process(worker: WorkerProcess) -> int | None:
    """The pool process that loaded the embedding model (beat, also a child, never imports onnxruntime)."""
    for pid in worker.child_pids():
        try:
            if "onnxruntime" in Path(f"/proc/{pid}/maps").read_text():
                return pid
        except OSError:
            continue
    return None


def vectorize_results(log: str, workspace_id: str) -> list[dict]:
    pattern = re.compile(rf"vectorize {workspace_id}: (\{{'status'.*\}})\s*$")
    return [ast.literal_eval(match.group(1)) for line in log.splitlines() if (match := pattern.search(line))]


def test_killed_vectorization_resumes_without_re_embedding_then_live_sync_follows_edits(plane_db, worker_env, pi_env, tmp_path):
    pi_env(PI_EMBEDDER="fastembed")
    workspace_id, issues = workspace_with_issues(plane_db, 300)
    app = create_app()
    # two pool processes: the one holding the killed task's message stays blocked until the broker gives it back
    worker = WorkerProcess({**worker_env, "PI_EMBEDDER": "fastembed"}, tmp_path / "worker.log", beat=True, concurrency=2)
    try:
        worker.wait_ready()
        job_id = Jobs(get_database(), get_database().settings).request(workspace_id)

        def progressing():
            job = job_of(workspace_id)
            if not job.task_id or not 64 <= job.progress_done < job.progress_total - 100:
                return None
            result = app.AsyncResult(job.task_id)
            return result.state == "PROGRESS" and result.info["total"] == 300 and result.info["done"] > 0

        wait_for(progressing, 120, 0.05, "vectorization publishing PROGRESS")
        pid = wait_for(lambda: model_process(worker), 10, message="the pool process running the model")
        os.kill(pid, signal.SIGKILL)
        indexed_before_crash = ledger_count(workspace_id)
        assert 0 < indexed_before_crash < 300

        wait_for(lambda: job_of(workspace_id).status == JobStatus.SUCCESS, 240, 0.2, "the job resumed and succeeded")
        job = job_of(workspace_id)
        assert job.id == job_id and job.attempts >= 2 and job.live_sync_enabled
        final = [result for result in vectorize_results(worker.log(), workspace_id) if result["status"] == "success"][-1]
        assert final["documents_already_indexed"] == indexed_before_crash
        assert final["chunks_embedded"] == 300 - indexed_before_crash  # one chunk per issue: nothing embedded twice
        assert ledger_count(workspace_id) == 300

        # live sync driven by beat: an edit becomes searchable, a deletion disappears
        plane_db.update(schema.issues, issues[0]["id"], name="Quetzalcoatl migration plan")
        plane_db.soft_delete(schema.issues, issues[1]["id"])
        deleted = f"issues:{issues[1]['id']}"
        wait_for(lambda: search("quetzalcoatl", workspace_id, mode="text", all_projects=True), 60, 0.2, "the edit searchable")
        wait_for(
            lambda: (
                deleted
                not in {
                    hit.document_id for hit in search(issues[1]["name"], workspace_id, mode="text", limit=50, all_projects=True)
                }
            ),
            60,
            0.2,
            "the deletion gone",
        )
    finally:
        worker.stop()


def test_duplicate_dispatch_runs_the_job_once(plane_db, worker_env, pi_env, tmp_path):
    pi_env(PI_EMBEDDER="hashing", CELERY_VECTOR_SYNC_ENABLED="0")
    workspace_id, _ = workspace_with_issues(plane_db, 300)
    app = create_app()
    env = {**worker_env, "PI_EMBEDDER": "hashing", "CELERY_VECTOR_SYNC_ENABLED": "0"}
    worker = WorkerProcess(env, tmp_path / "worker.log", concurrency=2)
    try:
        worker.wait_ready()
        job_id = Jobs(get_database(), get_database().settings).request(workspace_id, dispatch=False)
        first = app.send_task(VECTORIZE_TASK, kwargs={"workspace_id": workspace_id, "job_id": job_id})
        wait_for(lambda: job_of(workspace_id).status == JobStatus.RUNNING, 60, 0.05, "the first run started")
        second = app.send_task(VECTORIZE_TASK, kwargs={"workspace_id": workspace_id, "job_id": job_id})
        assert second.get(timeout=60)["status"] == "skipped"
        assert first.get(timeout=120)["status"] == "success"
        late = app.send_task(VECTORIZE_TASK, kwargs={"workspace_id": workspace_id, "job_id": job_id})
        assert late.get(timeout=60)["reason"] == f"job {job_id} is success: nothing to do"
        job = job_of(workspace_id)
        assert job.id == job_id and job.attempts == 1 and ledger_count(workspace_id) == 300
    finally:
        worker.stop()
