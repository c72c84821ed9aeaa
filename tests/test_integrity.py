"""Index integrity under crashes, sink outages and concurrency (on PostgreSQL with Plane's schema).

Each test reproduces one way the promise "the index equals what Plane shows" used to break.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from pi_framework import runtime
from pi_framework.db import get_database
from pi_framework.db.models import IndexedChunk, IndexedDocument, JobStatus, WorkspaceVectorization, utcnow
from pi_framework.pipeline.indexer import SinkOutage
from pi_framework.pipeline.ledger import Ledger
from pi_framework.plane import schema
from pi_framework.search import search
from pi_framework.sync import current_jobs, current_leases, sources, state
from pi_framework.sync.compare import missing_or_stale_count, pending_changes
from pi_framework.sync.downgrade import forget_workspace
from pi_framework.sync.leases import LeaseLost, Leases, queued_marker, workspace_lease
from pi_framework.sync.live import live_sync
from pi_framework.sync.trigger import stuck_workspaces, trigger
from pi_framework.sync.vectorize import vectorize
from pi_framework.testing.stall import stalled_at_sink_write


@pytest.fixture
def hashing(plane_settings, pi_env):
    return pi_env(PI_EMBEDDER="hashing", PI_CHUNK_TOKENS=24, PI_CHUNK_OVERLAP=0)


@pytest.fixture
def world(plane_db, hashing):
    owner = plane_db.user()
    workspace = plane_db.workspace(owner)
    project = plane_db.project(workspace, identifier="ENG")
    issues = [plane_db.issue(project, f"Issue about topic {n}", f"<p>body of issue {n}</p>") for n in range(5)]
    page = plane_db.page(
        workspace,
        owner=owner,
        name="Migration plan",
        description_html="".join(f"<p>Step {n}: move the zebra cluster to the new region.</p>" for n in range(12)),
    )
    workspace_id = workspace["id"]
    assert vectorize(workspace_id)["status"] == JobStatus.SUCCESS
    live_sync(workspace_id)  # consume the overlap window of the full pass
    return {"plane": plane_db, "owner": owner, "ws": workspace_id, "project": project, "issues": issues, "page": page}


def ledger_ids(workspace_id: str) -> set[str]:
    with get_database().session() as session:
        return set(session.scalars(select(IndexedDocument.document_id).where(IndexedDocument.workspace_id == workspace_id)))


def sink_chunk_ids(workspace_id: str) -> set[str]:
    with get_database().session() as session:
        known = set(session.scalars(select(IndexedChunk.chunk_id).where(IndexedChunk.workspace_id == workspace_id)))
    (sink,) = runtime.get_sinks()
    return sink.existing(sorted(known | {f"{doc}#{n}" for doc in ledger_ids(workspace_id) for n in range(20)}))


class FailingWrites:
    """Make every sink's bulk write raise (an outage) while active."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        (self.sink,) = runtime.get_sinks()
        self.monkeypatch = monkeypatch

    def __enter__(self) -> FailingWrites:
        def refuse(chunks, version=None):  # noqa: ANN001, ANN202
            raise ConnectionError("connection refused")

        self.monkeypatch.setattr(self.sink, "write", refuse)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.monkeypatch.undo()


# ---------------------------------------------------------------------- 1. orphan chunks after a crash
def test_a_crash_between_sink_write_and_ledger_commit_leaves_no_orphan(world, monkeypatch) -> None:
    ws, plane, page = world["ws"], world["plane"], world["page"]
    plane.update(schema.pages, page["id"], name="Migration plan v2")

    class Killed(BaseException):
        pass

    def die(_self, _update, _fence=None):  # noqa: ANN001, ANN202
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(Ledger, "apply", die)
        with pytest.raises(Killed):
            live_sync(ws)
    current_leases().clear(workspace_lease(ws))  # the killed worker's lease (it would expire by itself)
    page_chunks = {chunk for chunk in sink_chunk_ids(ws) if chunk.startswith(f"pages:{page['id']}#")}
    assert len(page_chunks) >= 3

    # then the page is made private and shortened
    plane.update(schema.pages, page["id"], access=1, description_html="<p>Short now.</p>")
    live_sync(ws)
    colleague = plane.user()["id"]
    assert not search("zebra cluster", ws, mode="text", user_id=colleague, all_projects=True)
    assert {chunk for chunk in sink_chunk_ids(ws) if chunk.startswith(f"pages:{page['id']}#")} == {f"pages:{page['id']}#0"}


# ---------------------------------------------------------------------- 2. a sink outage is not bad input
def test_a_sink_outage_aborts_live_sync_and_keeps_the_cursor(world, monkeypatch) -> None:
    ws, plane = world["ws"], world["plane"]
    cursor = state.load("issues", ws)
    plane.update(schema.issues, world["issues"][0]["id"], name="Renamed during the outage")
    with FailingWrites(monkeypatch), pytest.raises(SinkOutage, match="connection refused"):
        live_sync(ws)
    assert state.load("issues", ws) == cursor, "the cursor stays where it was"
    assert state.load(state.RETRIES, ws) is None, "an outage is not a document failure"
    assert not current_leases().held([workspace_lease(ws)]), "the lease is released"
    result = live_sync(ws)
    assert result["documents_indexed"] == 1 and not result["failed"]
    assert search("Renamed outage", ws, mode="text", all_projects=True)


def test_a_sink_outage_during_vectorization_requeues_the_job_instead_of_success(plane_db, hashing, monkeypatch) -> None:
    workspace = plane_db.workspace()
    project = plane_db.project(workspace, identifier="OPS")
    for n in range(3):
        plane_db.issue(project, f"Item {n}")
    with FailingWrites(monkeypatch), pytest.raises(SinkOutage):
        vectorize(workspace["id"])
    job = current_jobs().latest(workspace["id"])
    assert job.status == JobStatus.QUEUED and "SinkOutage" in job.error and not job.live_sync_enabled
    assert not ledger_ids(workspace["id"])
    assert vectorize(workspace["id"], task_id="after-the-outage")["status"] == JobStatus.SUCCESS
    assert len(ledger_ids(workspace["id"])) == 3


def test_a_refused_document_is_withdrawn_retried_then_parked_and_still_pending(world, monkeypatch) -> None:
    """A new version a sink refuses fails closed (the old one leaves the index), holds the cursor for
    PI_DOCUMENT_RETRIES ticks, then is parked: the cursor moves on, but the document stays pending (measured,
    flagged, listed with its reason) and is retried until it goes through."""
    ws, plane = world["ws"], world["plane"]
    (sink,) = runtime.get_sinks()
    poison = f"issues:{world['issues'][1]['id']}"
    real_write = sink.write

    def refuse_poison(chunks, version=None):  # noqa: ANN001, ANN202
        result = real_write([chunk for chunk in chunks if chunk.document_id != poison], version)
        result.failed.update({chunk.id: "cluster_block_exception" for chunk in chunks if chunk.document_id == poison})
        return result

    monkeypatch.setattr(sink, "write", refuse_poison)
    cursor = state.load("issues", ws)
    assert search("topic 1", ws, mode="text", all_projects=True)
    plane.update(schema.issues, world["issues"][1]["id"], name="Poisoned")
    plane.update(schema.issues, world["issues"][2]["id"], name="Healthy rename")
    first = live_sync(ws)
    assert first["failed"] == 1 and first["cursor_held"] == 1
    assert state.load("issues", ws) == cursor, "held for the next tick"
    assert search("Healthy rename", ws, mode="text", all_projects=True), "the rest of the batch went through"
    assert not [hit for hit in search("topic 1", ws, mode="text", all_projects=True) if hit.document_id == poison], (
        "the old version was withdrawn (fail closed)"
    )
    assert poison not in ledger_ids(ws)
    assert state.load(state.RETRIES, ws)[poison]["attempts"] == 1
    live_sync(ws)
    third = live_sync(ws)  # PI_DOCUMENT_RETRIES=3: parked, the cursor moves on
    assert "cursor_held" not in third and third["parked"] == 1 and state.load("issues", ws) != cursor
    parked = state.load(state.RETRIES, ws)[poison]
    assert parked["attempts"] == 3 and "cluster_block_exception" in parked["reason"] and parked["retry_at"]
    assert pending_changes(ws, sources(), 100) == 1, "still counted by the one measure of pending work"
    assert state.marker(ws) is not None, "the workspace stays flagged: every tick sends it a live sync"
    (row,) = [row for row in stuck_workspaces(0) if row["workspace_id"] == ws]
    assert poison in row["why"] and "cluster_block_exception" in row["why"], "pi status says which and why"
    live_sync(ws)  # not due yet: nothing changes
    assert state.load(state.RETRIES, ws)[poison]["attempts"] == 3
    monkeypatch.undo()  # the sink recovers; the retry falls due
    state.save(state.RETRIES, ws, {poison: {**parked, "retry_at": (utcnow() - timedelta(seconds=1)).isoformat()}})
    assert live_sync(ws)["documents_indexed"] >= 1
    assert search("Poisoned", ws, mode="text", all_projects=True)
    assert state.load(state.RETRIES, ws) is None and state.marker(ws) is None
    assert pending_changes(ws, sources(), 100) == 0


# ---------------------------------------------------------------------- 3. leases with fencing
def test_only_the_holder_renews_or_releases_and_an_expired_lease_is_taken_over(pi_database) -> None:
    lease = Leases(pi_database, seconds=30)
    assert lease.acquire("live:w1", "a")
    assert not lease.acquire("live:w1", "b")
    with pi_database.session() as session:  # a's worker stopped renewing: its lease expired
        session.execute(update(lease_table()).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert lease.acquire("live:w1", "b")
    with pytest.raises(LeaseLost):
        lease.renew("live:w1", "a")
    lease.release("live:w1", "a")  # a late release by the old holder does nothing
    assert lease.held() == {"live:w1": "b"}
    lease.renew("live:w1", "b")
    lease.release("live:w1", "b")
    assert lease.held() == {}


def test_every_acquire_gets_a_larger_fencing_token_whoever_takes_it(pi_database) -> None:
    lease = Leases(pi_database, seconds=30)
    first = lease.fence("live:w1", "a")
    again = lease.fence("live:w1", "a")  # the same holder taking it again
    lease.release("live:w1", "a")
    other = lease.fence("live:w2", "b")
    taken = lease.fence("live:w1", "c")
    seized = lease.seize("live:w1", "downgrade")
    tokens = [first.token, again.token, other.token, taken.token, seized.token]
    assert tokens == sorted(set(tokens)), tokens
    assert lease.held(["live:w1"]) == {"live:w1": "downgrade"}


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database(request, pi_env):  # noqa: ANN001, ANN201
    if request.param == "sqlite":
        yield get_database(pi_env())
        return
    database = get_database(pi_env(PI_DATABASE_URL=request.getfixturevalue("postgres_url")))
    yield database
    database.dispose()


def test_a_worker_clock_running_a_minute_ahead_cannot_take_a_lease_just_renewed(any_database, monkeypatch) -> None:
    """Lease times come from the database's clock: a worker whose own clock is 60 s ahead (longer than the lease)
    neither takes a lease its holder just renewed nor thinks it expired."""
    lease = Leases(any_database, seconds=30)
    assert lease.fence("live:w1", "a")
    lease.renew("live:w1", "a")
    ahead = lambda: utcnow_real() + timedelta(seconds=60)  # noqa: E731
    monkeypatch.setattr("pi_framework.db.models.utcnow", ahead)
    monkeypatch.setattr("pi_framework.sync.leases.utcnow", ahead, raising=False)  # where it was read before
    assert lease.fence("live:w1", "b") is None, "b's fast clock must not expire a's fresh lease"
    assert lease.held() == {"live:w1": "a"}
    lease.renew("live:w1", "a")


def utcnow_real():  # noqa: ANN201
    from datetime import UTC, datetime

    return datetime.now(UTC)


def test_a_downgrade_during_a_sink_write_leaves_the_workspace_empty(world, monkeypatch) -> None:
    """A live sync is inside its sink write when the workspace is downgraded: the downgrade seizes the lease and
    deletes everything; the sync's write lands afterwards, but its commit is refused and it takes its chunks back."""
    ws, plane = world["ws"], world["plane"]
    (sink,) = runtime.get_sinks()
    plane.update(schema.issues, world["issues"][0]["id"], name="Edited just before the downgrade")
    with stalled_at_sink_write(sink, monkeypatch, lambda: live_sync(ws)) as outcome:
        assert forget_workspace(ws) > 0
    assert isinstance(outcome.get("error"), LeaseLost), outcome
    assert sink.count(ws) == 0 and not ledger_ids(ws) and not sink_chunk_ids(ws)
    assert live_sync(ws)["status"] == "skipped"


def lease_table():  # noqa: ANN201
    from pi_framework.db.models import Lease

    return Lease


def test_a_live_sync_that_lost_its_lease_stops_without_moving_the_cursor(world, monkeypatch) -> None:
    ws, plane = world["ws"], world["plane"]
    cursor = state.load("issues", ws)
    plane.update(schema.issues, world["issues"][0]["id"], name="Edited while the lease is lost")

    def taken_over(self, name, holder):  # noqa: ANN001, ANN202
        raise LeaseLost(f"lease {name} is no longer held by {holder}")

    monkeypatch.setattr(Leases, "renew", taken_over)
    with pytest.raises(LeaseLost):
        live_sync(ws)
    assert state.load("issues", ws) == cursor


def test_vectorization_and_live_sync_never_write_a_workspace_at_once(world, pi_env) -> None:
    ws = world["ws"]
    pi_env(PI_EMBEDDER="hashing", PI_LEASE_SECONDS=1)
    assert current_leases().acquire(workspace_lease(ws), "vectorize:running-task")
    assert live_sync(ws)["status"] == "skipped"
    current_leases().release(workspace_lease(ws), "vectorize:running-task")
    assert current_leases().acquire(workspace_lease(ws), "live:running-task", seconds=600)  # a live sync that keeps renewing
    current_jobs().request(ws, dispatch=False)
    result = vectorize(ws, task_id="vectorizer")
    assert result["status"] == "deferred" and current_jobs().latest(ws).status == JobStatus.QUEUED


def test_a_killed_live_sync_frees_the_workspace_within_one_lease(world, pi_env) -> None:
    ws, plane = world["ws"], world["plane"]
    # long enough to outlast the tick's change scan on a loaded machine (0.2 s did not), short enough to wait out
    short = Leases(get_database(), seconds=3)
    assert short.acquire(workspace_lease(ws), "live:killed-task")  # then the worker is killed: no release
    plane.update(schema.issues, world["issues"][0]["id"], name="Edited after the kill")
    assert trigger()["busy"] == 1
    short.wait(workspace_lease(ws), "probe", timeout=10, poll=0.2)  # the dead holder's lease expired
    short.release(workspace_lease(ws), "probe")
    assert trigger()["dispatched"] == 1


# ---------------------------------------------------------------------- 4. downgrades, cursors, duplicates
def test_a_late_live_sync_after_a_downgrade_indexes_nothing(world) -> None:
    ws = world["ws"]
    assert forget_workspace(ws) > 0
    assert live_sync(ws)["status"] == "skipped"
    assert not ledger_ids(ws) and not sink_chunk_ids(ws)


def test_a_missing_cursor_is_repaired_by_a_job_not_an_implicit_full_pass(world) -> None:
    ws = world["ws"]
    state.remove("issues", ws)
    result = live_sync(ws)
    assert result["status"] == "refeed"
    job = current_jobs().active(ws)
    assert job is not None and job.status == JobStatus.QUEUED
    assert trigger()["dispatched"] == 0, "the job owns the workspace now"
    assert vectorize(ws, task_id="repair", job_id=job.id)["status"] == JobStatus.SUCCESS
    assert state.load("issues", ws) is not None and missing_or_stale_count(ws, sources()) == 0


def test_trigger_never_queues_a_second_live_sync_before_the_first_starts(world) -> None:
    ws, plane = world["ws"], world["plane"]
    plane.update(schema.issues, world["issues"][0]["id"], name="first edit")
    assert trigger()["dispatched"] == 1
    plane.update(schema.issues, world["issues"][1]["id"], name="second edit")
    assert trigger() == {**trigger_counts(), "queued": 1}
    assert current_leases().held([queued_marker(ws)])
    live_sync(ws)  # the queued task starts: its marker goes
    assert not current_leases().held([queued_marker(ws)])


def trigger_counts() -> dict[str, int]:
    return {"dispatched": 0, "flagged": 1, "busy": 0, "queued": 0, "failed": 0}


# ---------------------------------------------------------------------- 5. failed jobs never strand a workspace
def test_a_failed_job_is_retried_with_backoff_keeping_its_reason(world, pi_env) -> None:
    ws = world["ws"]
    pi_env(PI_EMBEDDER="hashing", PI_JOB_RETRY_DELAY=60)
    registry = current_jobs()
    job_id = registry.request(ws, dispatch=False)
    assert registry.claim(ws, "doomed", job_id).claimed
    registry.finish(job_id, "doomed", JobStatus.FAILED, "OperationalError: database is locked")
    assert registry.retry_failed() == 0, "not before its backoff"
    with get_database().session() as session:
        session.execute(
            update(WorkspaceVectorization)
            .where(WorkspaceVectorization.id == job_id)
            .values(finished_at=utcnow() - timedelta(seconds=61))
        )
    assert registry.redispatch_lost()["retried"] == 1
    retry = registry.active(ws)
    assert retry.id != job_id and registry.get(job_id).error == "OperationalError: database is locked"
    assert vectorize(ws, task_id="retry", job_id=retry.id)["status"] == JobStatus.SUCCESS
    assert registry.live_sync_enabled(ws)


def test_cancelled_jobs_are_never_retried(world) -> None:
    ws = world["ws"]
    registry = current_jobs()
    registry.request(ws, dispatch=False)
    assert registry.cancel(ws, "cancelled: plan FREE") == 1
    with get_database().session() as session:
        session.execute(update(WorkspaceVectorization).values(finished_at=utcnow() - timedelta(days=1)))
    assert registry.retry_failed() == 0


def test_the_soft_time_limit_checkpoints_and_the_job_continues(plane_db, hashing, monkeypatch, pi_env) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    pi_env(PI_EMBEDDER="hashing", PI_EMBEDDING_BATCH_SIZE=4)  # groups of 16 chunks: some are committed before the limit
    workspace = plane_db.workspace()
    project = plane_db.project(workspace, identifier="BIG")
    for n in range(30):
        plane_db.issue(project, f"Item {n}")
    (issues,) = [source for source in sources() if source.name == "issues"]
    real = type(issues).changes
    seen = {"n": 0}

    def slow(self, workspace_id, cursor):  # noqa: ANN001, ANN202
        changes = real(self, workspace_id, cursor)
        original = changes.documents

        def documents():  # noqa: ANN202
            for document in original:
                seen["n"] += 1
                if seen["n"] == 20:
                    raise SoftTimeLimitExceeded()
                yield document

        changes.documents = documents()
        return changes

    monkeypatch.setattr(type(issues), "changes", slow)
    result = vectorize(workspace["id"])
    assert result["status"] == "checkpointed"
    job = current_jobs().latest(workspace["id"])
    assert job.status == JobStatus.QUEUED and job.alive_at is not None, "sent again at once"
    monkeypatch.undo()
    final = vectorize(workspace["id"], task_id="continuation", job_id=job.id)
    assert final["status"] == JobStatus.SUCCESS and final["documents_already_indexed"] > 0
    assert len(ledger_ids(workspace["id"])) == 30
