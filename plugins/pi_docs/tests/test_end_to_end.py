"""End to end: a real worker (RabbitMQ, PostgreSQL, the real fastembed model) runs the periodic task; search finds the docs."""

from __future__ import annotations

import uuid

import pytest
from celery import Celery
from conftest import REPO
from pi_docs import TASK_NAME
from pi_docs.sync import SOURCE
from test_sync import DOCS

from pi_framework.db import get_database
from pi_framework.db.models import SyncState
from pi_framework.search import search
from pi_framework.worker_process import WorkerProcess, wait_for


@pytest.mark.slow
def test_worker_syncs_docs_and_search_finds_them_from_any_workspace(
    docs_settings, git_repo, fake_github, postgres_url, rabbitmq_url, tmp_path
):
    queue = f"pi_test_{uuid.uuid4().hex}"
    settings = docs_settings(
        PI_EMBEDDER="fastembed", PI_DATABASE_URL=postgres_url, CELERY_BROKER_URL=rabbitmq_url, CELERY_DEFAULT_QUEUE=queue
    )
    sha = git_repo.commit("docs", DOCS)
    worker = WorkerProcess({"CELERY_DEFAULT_QUEUE": queue}, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        sender = Celery(broker=rabbitmq_url)
        sender.send_task(TASK_NAME, queue=queue)

        def synced() -> bool:
            with get_database(settings).session() as session:
                row = session.get(SyncState, (SOURCE, f"{REPO}@HEAD"))
                return row is not None and row.cursor.get("sha") == sha

        try:
            wait_for(synced, timeout=90, message="docs synced by the worker")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; worker log:\n{worker.log()[-4000:]}") from None
    finally:
        worker.stop()
    assert f"task finish {TASK_NAME}" in worker.log()
    for workspace in (str(uuid.uuid4()), str(uuid.uuid4())):
        hits = search("how do I run the installer for setup", workspace_id=workspace, kinds=["docs"])
        assert hits and hits[0].document_id == f"docs:{REPO}:docs/guide/setup.mdx"
        assert hits[0].workspace_id is None and hits[0].title == "Setup guide"
