"""Every job transition is a compare-and-set on the status it expects: a cancel (a downgrade) always wins.

Issue 19, item 3: a cancel that landed after a task's last heartbeat was overwritten by ``finish()`` as ``success``
with live sync on (the next tick re-indexed the downgraded workspace), and by ``requeue()`` after a failing sink
write (the job was re-sent after the heartbeat timeout and succeeded). Each test races one transition against a
cancel, two ways:

* ``before``: the cancel committed before the transition started (a downgrade after the task's last heartbeat);
* ``during``: the cancel commits, on its own connection, after the transition read the job and just before the
  transition's own ``UPDATE`` runs: the tightest window, which only the condition of that ``UPDATE`` can close.

Each runs on SQLite and on PostgreSQL (``PI_TEST_POSTGRES_URL``), and ends with the job ``cancelled``, its
workspace without live sync and no task sent for it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, update

from pi_framework import runtime
from pi_framework.db import reset_database
from pi_framework.db.models import IndexedDocument, JobStatus, utcnow
from pi_framework.plane.sample import create_sqlite_plane
from pi_framework.sync import current_jobs, state
from pi_framework.sync.downgrade import forget_workspace
from pi_framework.sync.jobs import Job, JobLost, Jobs
from pi_framework.sync.trigger import trigger

WS = "ws-downgraded"
TASK = "task-1"
REASON = "cancelled: workspace plan FREE is not vectorized"

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)]


@pytest.fixture(params=BACKENDS)
def pi_db(request, pi_env) -> Iterator[str]:
    """The PI database on SQLite or on a fresh PostgreSQL database (``PI_TEST_POSTGRES_URL``)."""
    if request.param == "postgresql":
        pi_env(PI_DATABASE_URL=request.getfixturevalue("postgres_url"))
    yield request.param
    reset_database()  # before the PostgreSQL database is dropped


@pytest.fixture
def sent(monkeypatch, pi_db) -> list[dict[str, Any]]:
    """The vectorize tasks the jobs sent (instead of a broker)."""
    messages: list[dict[str, Any]] = []
    module = sys.modules[Jobs.__module__]  # ``pi_framework.sync.jobs`` is also the name of a function
    monkeypatch.setattr(module, "send_task", lambda name, **kwargs: messages.append({"task": name, **kwargs}))
    return messages


@pytest.fixture
def registry(sent) -> Jobs:
    return current_jobs()


@pytest.fixture(params=["before", "during"])
def when(request) -> str:
    return request.param


@contextmanager
def racing(registry: Jobs, when: str, workspace_id: str = WS) -> Iterator[None]:
    """Run the block with a cancel of *workspace_id* landing ``before`` it or ``during`` it (see the module docstring)."""
    if when == "before":
        assert registry.cancel(workspace_id, REASON) == 1
        yield
        return
    engine, fired = registry.database.engine, []

    def cancel_first(_connection, _cursor, statement, *_args) -> None:  # noqa: ANN001
        if not fired and " ".join(statement.split()).upper().startswith("UPDATE WORKSPACE_VECTORIZATIONS"):
            fired.append(statement)
            assert registry.cancel(workspace_id, REASON) == 1, "the cancel found no active job"

    event.listen(engine, "before_cursor_execute", cancel_first)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", cancel_first)
    assert fired, "the transition ran no UPDATE of its job"


def running(registry: Jobs, done: int = 3, total: int = 3) -> int:
    """A job dispatched, claimed by TASK and reporting (its last heartbeat)."""
    job_id = registry.request(WS)
    assert registry.claim(WS, TASK, job_id).claimed
    registry.heartbeat(job_id, TASK, done, total)
    return job_id


def age_heartbeats(registry: Jobs) -> None:
    """Move every job's last sign of life (and end) back past ``PI_HEARTBEAT_TIMEOUT_SECONDS`` (and any retry delay)."""
    long_ago = utcnow() - timedelta(seconds=registry.settings.PI_HEARTBEAT_TIMEOUT_SECONDS + 60)
    with registry.database.session() as session:
        session.execute(update(Job).where(Job.alive_at.is_not(None)).values(alive_at=long_ago))
        session.execute(update(Job).where(Job.finished_at.is_not(None)).values(finished_at=long_ago))


def assert_cancelled(registry: Jobs, job_id: int, workspace_id: str = WS) -> None:
    job = registry.get(job_id)
    assert (job.status, job.error) == (JobStatus.CANCELLED, REASON)
    assert not job.live_sync_enabled and job.finished_at is not None
    assert registry.active(workspace_id) is None
    assert not registry.live_sync_enabled(workspace_id) and workspace_id not in registry.live_sync_workspaces()


# ---------------------------------------------------------------------- the transitions, one race each
@pytest.mark.parametrize("outcome", [JobStatus.SUCCESS, JobStatus.FAILED])
def test_cancel_against_finish(registry, sent, when, outcome) -> None:
    job_id = running(registry)
    with racing(registry, when):
        assert registry.finish(job_id, TASK, outcome, None if outcome == JobStatus.SUCCESS else "boom") is False
    assert_cancelled(registry, job_id)
    age_heartbeats(registry)
    assert registry.redispatch_lost() == {"requeued": 0, "resent": 0, "retried": 0, "dispatched": 0}
    assert_cancelled(registry, job_id)
    assert [message["job_id"] for message in sent] == [job_id], "sent once, when it was requested"


@pytest.mark.parametrize("at_once", [False, True], ids=["backoff", "checkpoint"])
def test_cancel_against_requeue(registry, sent, when, at_once) -> None:
    job_id = running(registry)
    with racing(registry, when):
        lost = registry.requeue(job_id, TASK, "interrupted, will resume: SinkOutage: connection refused", at_once=at_once)
    assert lost is False
    assert_cancelled(registry, job_id)
    # the heartbeat timeout passes: the re-dispatch pass has nothing to re-send
    age_heartbeats(registry)
    assert registry.redispatch_lost() == {"requeued": 0, "resent": 0, "retried": 0, "dispatched": 0}
    assert [message["job_id"] for message in sent] == [job_id], "sent once, when it was requested"
    # and a late copy of the task's message finds the job over
    assert not registry.claim(WS, "task-2", job_id).claimed
    assert_cancelled(registry, job_id)


def test_cancel_against_heartbeat(registry, when) -> None:
    job_id = running(registry, done=1, total=3)
    with racing(registry, when), pytest.raises(JobLost, match="cancelled"):
        registry.heartbeat(job_id, TASK, 2, 3)
    assert_cancelled(registry, job_id)
    assert registry.get(job_id).progress_done == 1, "a lost heartbeat records nothing"


@pytest.mark.parametrize("held", ["queued", "silent"], ids=["start", "takeover"])
def test_cancel_against_claim(registry, sent, when, held) -> None:
    """``start``: the job's message arrives; ``takeover``: a second task takes over a job whose task went silent."""
    if held == "queued":
        job_id, task = registry.request(WS), TASK
    else:
        job_id, task = running(registry), "task-2"
        age_heartbeats(registry)
    with racing(registry, when):
        claim = registry.claim(WS, task, job_id)
    assert not claim.claimed and claim.job_id == job_id
    assert "cancelled" in claim.reason
    assert_cancelled(registry, job_id)
    assert registry.get(job_id).task_id == (None if held == "queued" else TASK)


def test_cancel_against_dispatch(registry, sent, when) -> None:
    job_id = registry.request(WS, dispatch=False)
    with racing(registry, when):
        assert registry.dispatch_queued() == 0
    assert sent == [], "no task for a cancelled job"
    assert_cancelled(registry, job_id)
    assert registry.get(job_id).alive_at is None


# ---------------------------------------------------------------------- without a race, and after one
def test_uncontested_transitions_report_that_they_happened(registry, sent) -> None:
    job_id = registry.request(WS)
    assert sent == [{"task": "pi.celery_app.vectorize_workspace", "workspace_id": WS, "job_id": job_id}]
    assert registry.claim(WS, TASK, job_id).claimed
    registry.heartbeat(job_id, TASK, 1, 2)
    assert registry.requeue(job_id, TASK, "checkpoint", at_once=True) is True
    assert registry.get(job_id).status == JobStatus.QUEUED
    assert [message["job_id"] for message in sent] == [job_id, job_id], "sent again at once"
    assert registry.claim(WS, "task-2", job_id).claimed
    assert registry.finish(job_id, "task-1", JobStatus.SUCCESS) is False, "the first task no longer runs it"
    assert registry.finish(job_id, "task-2", JobStatus.SUCCESS) is True
    assert registry.finish(job_id, "task-2", JobStatus.FAILED, "late") is False, "a finished job is over"
    job = registry.get(job_id)
    assert (job.status, job.live_sync_enabled, job.error) == (JobStatus.SUCCESS, True, None)
    assert registry.live_sync_workspaces() == [WS]
    with pytest.raises(ValueError, match="success or failed"):
        registry.finish(job_id, "task-2", JobStatus.CANCELLED)


def test_an_explicit_request_after_a_cancel_is_a_new_job(registry, sent) -> None:
    """The cancelled job stays cancelled; an upgrade queues a new one, which runs and switches live sync on."""
    cancelled = running(registry)
    assert registry.cancel(WS, REASON) == 1
    assert registry.finish(cancelled, TASK, JobStatus.SUCCESS) is False
    job_id = registry.request(WS)
    assert job_id != cancelled and sent[-1]["job_id"] == job_id
    assert registry.claim(WS, "task-2", job_id).claimed
    assert registry.finish(job_id, "task-2", JobStatus.SUCCESS) is True
    assert registry.get(cancelled).status == JobStatus.CANCELLED
    assert registry.live_sync_workspaces() == [WS]


# ---------------------------------------------------------------------- the two stories of the issue, end to end
@pytest.fixture
def plane_workspace(pi_db, pi_env, tmp_path) -> str:
    """A Plane workspace (Plane on SQLite) with a few issues, the hashing embedder, the embedded sink."""
    plane = create_sqlite_plane(str(tmp_path / "plane.sqlite"), runtime.plane_tables())
    workspace = plane.workspace()
    project = plane.project(workspace, identifier="ENG")
    for n in range(3):
        plane.issue(project, f"Issue about topic {n}", f"<p>body of issue {n}</p>")
    pi_env(PLANE_DATABASE_URL=f"sqlite:///{tmp_path / 'plane.sqlite'}", PI_EMBEDDER="hashing")
    return workspace["id"]


def ledger_rows(registry: Jobs, workspace_id: str) -> int:
    with registry.database.session() as session:
        return len(session.scalars(select(IndexedDocument.document_id).where(IndexedDocument.workspace_id == workspace_id)).all())


def test_a_downgrade_after_the_last_heartbeat_is_not_undone_by_finish(plane_workspace, sent, monkeypatch) -> None:
    from pi_framework.sync.vectorize import vectorize

    ws, registry = plane_workspace, current_jobs()
    job_id = registry.request(ws)
    reconciled = state.reconciled

    def downgrade_now(workspace_id: str) -> None:  # the run's last step before finish(): every heartbeat is behind it
        reconciled(workspace_id)
        assert registry.cancel(workspace_id, REASON) == 1  # what pi_plans' downgrade does
        forget_workspace(workspace_id)

    monkeypatch.setattr(state, "reconciled", downgrade_now)
    vectorize(ws, task_id=TASK, job_id=job_id)
    assert_cancelled(registry, job_id, ws)
    assert ledger_rows(registry, ws) == 0 and state.load("issues", ws) is None, "no cursor, nothing indexed"
    assert trigger()["dispatched"] == 0, "the next tick leaves the downgraded workspace alone"
    age_heartbeats(registry)
    assert registry.redispatch_lost()["dispatched"] == 0
    assert_cancelled(registry, job_id, ws)


def test_a_downgrade_during_a_sink_outage_is_not_undone_by_requeue(plane_workspace, sent, monkeypatch) -> None:
    from pi_framework.sync.vectorize import vectorize

    ws, registry = plane_workspace, current_jobs()
    job_id = registry.request(ws)
    (sink,) = runtime.get_sinks()

    def refuse(*_args, **_kwargs) -> None:  # noqa: ANN002, ANN003
        registry.cancel(ws, REASON)  # the downgrade lands while the write fails
        raise ConnectionError("connection refused")

    with monkeypatch.context() as outage, pytest.raises(Exception, match="connection refused"):
        outage.setattr(sink, "write", refuse)
        vectorize(ws, task_id=TASK, job_id=job_id)
    assert_cancelled(registry, job_id, ws)
    age_heartbeats(registry)  # the sink is back; the heartbeat timeout passes
    assert registry.redispatch_lost() == {"requeued": 0, "resent": 0, "retried": 0, "dispatched": 0}
    assert [message["job_id"] for message in sent] == [job_id], "never sent again"
    assert vectorize(ws, task_id="task-2", job_id=job_id)["status"] == "skipped"
    assert_cancelled(registry, job_id, ws)
    assert trigger()["dispatched"] == 0
