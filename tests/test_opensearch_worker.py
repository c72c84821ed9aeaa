"""A real worker (with beat, embedded broker) vectorizes a Plane workspace into the real OpenSearch node and live-syncs
it: an edit becomes searchable and a deletion disappears, seen through ``search()`` (kNN + BM25) as a project member.

The hashing embedder keeps the worker fast; the sink, the node (k-NN plugin, lucene engine), the Plane database
(PostgreSQL) and the worker are real. The index prefix is this test's own and is deleted afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from opensearchpy import OpenSearch

from pi_framework import runtime
from pi_framework.celery_app import create_app
from pi_framework.db import get_database
from pi_framework.db.models import JobStatus
from pi_framework.plane import schema
from pi_framework.plane.sample import sample_issue
from pi_framework.search import search
from pi_framework.sinks.opensearch.sink import OpenSearchSink
from pi_framework.sync.jobs import Jobs
from pi_framework.testing.access_matrix import MEMBER
from pi_framework.worker_process import WorkerProcess, wait_for

pytestmark = pytest.mark.slow

ISSUES = 40


@pytest.fixture
def prefix(opensearch_url) -> Iterator[str]:
    name = f"piworker{uuid.uuid4().hex[:8]}"
    yield name
    client = OpenSearch(hosts=[opensearch_url])
    client.indices.delete(index=f"{name}-*", ignore_unavailable=True)
    client.close()


@pytest.fixture
def worker_env(plane_db, plane_settings, pi_env, opensearch_url, prefix, tmp_path) -> dict[str, str]:
    env = {
        "PI_DATA_DIR": str(tmp_path / "pi-data"),
        "PLANE_DATABASE_URL": plane_db.url,
        "PI_SINKS": "opensearch",
        "OPENSEARCH_URL": opensearch_url,
        "OPENSEARCH_INDEX_PREFIX": prefix,
        "PI_EMBEDDER": "hashing",
        "CELERY_DEFAULT_QUEUE": f"pi_test_{uuid.uuid4().hex}",
        "CELERY_VECTOR_SYNC_INTERVAL": "1",
        "PI_REDISPATCH_INTERVAL": "2",
        "PI_ACCESS_CACHE_TTL": "0",
        "HF_HUB_OFFLINE": "1",
    }
    pi_env(**env)
    create_app()  # this process dispatches through the worker's broker (the current app)
    return env


def test_worker_vectorizes_and_live_syncs_a_workspace_into_opensearch(plane_db, worker_env, tmp_path):
    owner = plane_db.user()
    workspace = plane_db.workspace(owner)
    project = plane_db.project(workspace, identifier="WEB")
    reader = plane_db.user()
    plane_db.workspace_member(workspace, reader, MEMBER)
    plane_db.project_member(project, reader, MEMBER)
    outsider = plane_db.user()
    plane_db.workspace_member(workspace, outsider, MEMBER)  # in the workspace, not in the project
    issues = [plane_db.issue(project, *sample_issue(n), sequence_id=n + 1) for n in range(ISSUES)]
    workspace_id, user = workspace["id"], reader["id"]

    def documents(query: str, mode: str = "hybrid", user_id: str | None = user) -> list[str]:
        return [hit.document_id for hit in search(query, workspace_id, user_id=user_id, mode=mode, limit=ISSUES + 10)]

    worker = WorkerProcess(worker_env, tmp_path / "worker.log", beat=True)
    try:
        worker.wait_ready()
        Jobs(get_database(), get_database().settings).request(workspace_id)
        wait_for(
            lambda: Jobs(get_database(), get_database().settings).latest(workspace_id).status == JobStatus.SUCCESS,
            180,
            0.2,
            "the vectorization job succeeded",
        )
        (sink,) = runtime.get_sinks()
        assert isinstance(sink, OpenSearchSink) and sink.prefix == worker_env["OPENSEARCH_INDEX_PREFIX"]
        ids = {f"issues:{issue['id']}" for issue in issues}
        wait_for(lambda: set(documents(issues[5]["name"], "vector")) == ids, 30, 0.2, "every issue in the kNN index")
        assert documents(issues[5]["name"], "text")[0] == f"issues:{issues[5]['id']}"
        assert documents(issues[5]["name"], user_id=outsider["id"]) == [], "project-scoped: not a project member"
        assert documents(issues[5]["name"], user_id=None) == [], "project-scoped: no user, nothing of any project"

        # live sync driven by beat: an edit becomes searchable, a deletion disappears (from BM25 and from kNN)
        edited, deleted = f"issues:{issues[0]['id']}", f"issues:{issues[1]['id']}"
        plane_db.update(schema.issues, issues[0]["id"], name="Quetzalcoatl migration plan")
        plane_db.soft_delete(schema.issues, issues[1]["id"])
        wait_for(lambda: documents("quetzalcoatl migration")[:1] == [edited], 60, 0.2, "the edit searchable")
        assert documents("quetzalcoatl", "text") == [edited]
        wait_for(lambda: deleted not in documents(issues[1]["name"], "vector"), 60, 0.2, "the deletion gone from kNN")
        assert deleted not in documents(issues[1]["name"], "text")
        assert set(documents(issues[5]["name"], "vector")) == ids - {deleted}
        assert "Traceback" not in worker.log()
    finally:
        worker.stop()
