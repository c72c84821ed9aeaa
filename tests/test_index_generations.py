"""A model change without downtime, on both sinks (:mod:`pi_framework.sync.generations`).

Changing ``PI_EMBEDDING_MODEL`` builds a new index generation beside the live one while search keeps answering from
the old one, with the old model; edits made during the build reach the new generation (mirrored writes, and the copy
for what was there before); the swap is one transaction; the old generation's storage goes after the grace period.
The "models" are the hashing embedder at 384 and 256 dimensions: vectors of one can never be searched with the other
(the sinks refuse a vector of the wrong size), so a mixed index would fail these searches, not just rank badly.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from pi_framework import runtime
from pi_framework.cli import build_cli
from pi_framework.contract.documents import Chunk
from pi_framework.contract.sinks import WriteResult
from pi_framework.db import generations as state
from pi_framework.db import get_database
from pi_framework.db.models import JobStatus
from pi_framework.embedding import HashingEmbedder
from pi_framework.health import run_health_checks
from pi_framework.plane import schema
from pi_framework.search import search
from pi_framework.sinks.embedded import EmbeddedSink
from pi_framework.sync import generations
from pi_framework.sync.live import live_sync
from pi_framework.sync.vectorize import vectorize
from pi_framework.worker_process import WorkerProcess, wait_for

FAST = {"PI_EMBEDDER": "hashing", "PI_GENERATION_CHECK_SECONDS": "0.05", "PI_GENERATION_GRACE_SECONDS": "1"}


@pytest.fixture(params=["embedded", "opensearch"])
def sink_env(request, plane_settings, pi_env) -> Iterator[dict[str, str]]:
    """The Plane database and one sink (a real OpenSearch node under a prefix of its own), hashing embedder."""
    if request.param == "embedded":
        env = dict(FAST)
        pi_env(**env)
        yield env
        return
    url = request.getfixturevalue("opensearch_url")
    prefix = f"pig{uuid.uuid4().hex[:10]}"
    env = {**FAST, "OPENSEARCH_URL": url, "OPENSEARCH_INDEX_PREFIX": prefix, "PI_SINKS": "opensearch"}
    pi_env(**env)
    yield env
    from opensearchpy import OpenSearch

    client = OpenSearch(hosts=[url])
    client.indices.delete(index=f"{prefix}*", ignore_unavailable=True)
    client.close()


def vectorized(plane_db, env: dict[str, str]) -> dict[str, Any]:  # noqa: ANN001
    """A vectorized workspace with three work items."""
    owner = plane_db.user()
    ws = plane_db.workspace(owner)
    project = plane_db.project(ws, identifier="WEB")
    plane_db.workspace_member(ws, owner)
    plane_db.project_member(project, owner)
    items = {
        name: plane_db.issue(project, name, f"<p>{body}</p>")
        for name, body in (
            ("Login page crashes", "The login form throws on submit"),
            ("Billing export", "Export invoices to a spreadsheet"),
            ("Dark mode", "Theme colours for the night"),
        )
    }
    assert vectorize(ws["id"])["status"] == JobStatus.SUCCESS
    return {"plane": plane_db, "ws": ws["id"], "ws_row": ws, "owner": owner["id"], "items": items, "env": env}


@pytest.fixture
def workspace(plane_db, sink_env) -> dict[str, Any]:
    return vectorized(plane_db, sink_env)


@pytest.fixture
def embedded_workspace(plane_db, plane_settings, pi_env) -> dict[str, Any]:
    pi_env(**FAST)
    return vectorized(plane_db, dict(FAST))


def first(workspace: dict[str, Any], query: str, mode: str = "hybrid") -> str | None:
    """The title (without the ``WEB-n`` key) of the best hit."""
    hits = search(query, workspace["ws"], user_id=workspace["owner"], mode=mode)
    return hits[0].title.removeprefix(f"{hits[0].key} ") if hits else None


def assert_search_answers(workspace: dict[str, Any]) -> None:
    """Every mode finds the right item first: never an empty index, never a query vector of another model."""
    for mode in ("hybrid", "vector", "text"):
        assert first(workspace, "login form crashes", mode) == "Login page crashes", mode
        assert first(workspace, "invoices spreadsheet export", mode) == "Billing export", mode


def switch_model(pi_env, workspace: dict[str, Any], model: str) -> None:
    """Restart this process with another model (as an operator's rolling restart does)."""
    pi_env(**workspace["env"], PI_EMBEDDING_MODEL=model)


def advance_until_live(workspace: dict[str, Any], between=None) -> list[dict[str, Any]]:  # noqa: ANN001
    passes: list[dict[str, Any]] = []

    def step() -> bool:
        passes.append(generations.advance())
        assert_search_answers(workspace)
        if between is not None:
            between(len(passes))
        return "swapped" in passes[-1]

    wait_for(step, timeout=60, interval=0.05, message="the new generation going live", fatal=AssertionError)
    return passes


def dimensions(sinks, workspace_id: str) -> set[int]:  # noqa: ANN001
    """The vector sizes stored for *workspace_id* in *sinks*."""
    return {len(chunk.vector) for sink in sinks for chunk in sink.read_chunks(workspace_id=workspace_id) if chunk.vector}


def test_a_model_change_builds_beside_the_live_generation_and_swaps_without_an_empty_or_mixed_index(workspace, pi_env):
    plane, ws, items = workspace["plane"], workspace["ws"], workspace["items"]
    assert_search_answers(workspace)
    assert runtime.generations().live.name == "g1"
    old_sinks = runtime.get_sinks()
    assert dimensions(old_sinks, ws) == {384}

    switch_model(pi_env, workspace, "hashing-256")
    assert runtime.generations().live.name == "g1", "the settings alone change nothing live"
    assert_search_answers(workspace)  # the old generation, with its own model, answers

    def edit(step: int) -> None:
        if step == 1:  # the build has started: a live sync now writes both generations
            plane.update(
                schema.issues, items["Dark mode"]["id"], name="Dark mode schedule", description_html="<p>Sunset timer</p>"
            )
            assert live_sync(ws)["status"] == "success"

    passes = advance_until_live(workspace, between=edit)
    assert passes[0]["started"] == "g2" and passes[-1]["swapped"] == "g2"
    live = runtime.generations().live
    assert (live.name, live.model) == ("g2", "hashing-256")
    assert_search_answers(workspace)
    assert first(workspace, "sunset timer schedule", "vector") == "Dark mode schedule", "the edit made during the build"
    outsider = plane.user()  # a workspace member outside the project: the copied chunks kept their access fields
    plane.workspace_member(workspace["ws_row"], outsider)
    assert search("login form crashes", ws, user_id=outsider["id"]) == []
    new_sinks = runtime.get_sinks()
    assert dimensions(new_sinks, ws) == {256}, "every chunk of the new generation re-embedded"
    assert sum(sink.count(ws) for sink in new_sinks) == sum(sink.count(ws) for sink in old_sinks)

    # an edit after the swap goes to the new generation only, with the new model
    plane.update(schema.issues, items["Billing export"]["id"], description_html="<p>Export invoices to a spreadsheet monthly</p>")
    assert live_sync(ws)["status"] == "success"
    assert first(workspace, "invoices spreadsheet monthly", "vector") == "Billing export"

    wait_for(lambda: "g1" in generations.advance().get("dropped", []), timeout=30, interval=0.2)
    registry = runtime.get_registry()
    first_generation = [registry.sink_factories[name](registry.settings) for name in registry.settings.sink_names]
    assert sum(sink.count() for sink in first_generation) == 0, "the replaced generation's storage is gone"
    assert [row["generation"] for row in generations.status()] == ["g2"]
    assert_search_answers(workspace)


def test_the_embedded_sink_keeps_each_generation_in_a_file_of_its_own(embedded_workspace, pi_env):
    workspace = embedded_workspace
    switch_model(pi_env, workspace, "hashing-256")
    advance_until_live(workspace)
    (sink,) = runtime.get_sinks()
    assert isinstance(sink, EmbeddedSink) and sink.path.name == "embedded_index.g2.sqlite"
    assert sink.health()["dimension"] == 256
    assert (sink.base_path.parent / "embedded_index.sqlite").exists(), "the old file stays until the grace period"
    wait_for(lambda: "g1" in generations.advance().get("dropped", []), timeout=30, interval=0.2)
    assert not (sink.base_path.parent / "embedded_index.sqlite").exists()


def test_a_copy_killed_midway_resumes_and_a_failed_mirror_write_sends_its_workspace_back(workspace, pi_env, monkeypatch):
    plane, ws, items = workspace["plane"], workspace["ws"], workspace["items"]
    switch_model(pi_env, workspace, "hashing-256")
    database = get_database(runtime.get_registry().settings)
    started = generations.advance()["started"]
    wait_for(lambda: state.copy_may_start(database, started, generations.settle_seconds()), timeout=10, interval=0.05)

    # a copy that dies in the middle (the worker killed, the sink down): the scope stays pending, the error is shown
    building = runtime.generations().building
    assert building is not None
    (target,) = runtime.sinks_of(building)

    def down(chunks, version=None) -> WriteResult:  # noqa: ANN001
        raise RuntimeError("node gone")

    monkeypatch.setattr(target, "write", down)
    result = generations.advance()
    assert "swapped" not in result and "node gone" in result["error"]
    (row,) = [row for row in generations.status() if row["generation"] == started]
    assert "node gone" in row["error"] and row["scopes_copied"] < row["scopes_total"]
    health = run_health_checks(runtime.get_registry())["checks"]["index_generations"]
    assert not health["ok"] and "node gone" in health["error"], "pi health says the build is stuck, and why"
    assert ws in {scope for scope, _ in state.pending_scopes(database, started)}
    monkeypatch.undo()

    # a write to the new generation refused during the build: the live write stands; a copy that read the workspace
    # before cannot mark it copied (its epoch moved), so the copy is redone after the refused write
    (_, epoch_before), *_ = [(scope, epoch) for scope, epoch in state.pending_scopes(database, started) if scope == ws]

    def refuse(chunks, version=None) -> WriteResult:  # noqa: ANN001
        return WriteResult(failed={chunk.id: "disk full" for chunk in chunks})

    monkeypatch.setattr(target, "write", refuse)
    plane.update(schema.issues, items["Dark mode"]["id"], description_html="<p>Sunset timer</p>")
    assert live_sync(ws)["status"] == "success", "the live generation took the edit"
    assert first(workspace, "sunset timer", "text") == "Dark mode"
    monkeypatch.undo()
    assert not state.finish_scope(database, started, ws, epoch_before, 3), "a copy older than the refused write"
    assert ws in {scope for scope, _ in state.pending_scopes(database, started)}
    advance_until_live(workspace)
    assert first(workspace, "sunset timer", "vector") == "Dark mode", "the redone copy carried the edit over"
    assert run_health_checks(runtime.get_registry())["checks"]["index_generations"] == {
        "live": started,
        "ok": True,
        "seconds": pytest.approx(0, abs=5),
    }
    (sink,) = runtime.get_sinks()
    assert {len(chunk.vector) for chunk in sink.read_chunks(workspace_id=ws)} == {256}


def test_a_copy_never_brings_back_what_a_newer_write_deleted_and_prunes_what_the_live_one_lost(tmp_path):
    live, target = EmbeddedSink(tmp_path / "index.sqlite"), EmbeddedSink(tmp_path / "index.sqlite").for_generation("g2")
    live.ensure_ready(4)
    target.ensure_ready(4)

    def chunk(document: str, text: str) -> Chunk:
        return Chunk(f"{document}#0", document, 0, text, "", "test", "note", "ws", vector=[1.0, 0.0, 0.0, 0.0])

    live.write([chunk("kept", "still here"), chunk("deleted", "deleted later"), chunk("edited", "old text")], version=5)
    target.write([chunk("gone", "the live generation lost it")], version=3)
    read_before = list(live.read_chunks(workspace_id="ws"))  # the copy read the workspace, then writers went on:
    for sink in (live, target):  # a delete and an edit, each written to both generations (the mirror)
        sink.delete_documents(["deleted"], version=9)
        sink.write([chunk("edited", "new text")], version=9)

    class ReadEarlier:
        """The live sink as the copy saw it: its read came before the writes above."""

        name = "embedded"

        def read_chunks(self, **scope):  # noqa: ANN003, ANN202
            return iter(read_before)

        def existing(self, chunk_ids):  # noqa: ANN001, ANN202
            return live.existing(chunk_ids)

    embedder = HashingEmbedder(dimension=4)
    assert generations.copy_scope("ws", [ReadEarlier()], [target], embedder, page=1) == 3
    held = {chunk.id: chunk for chunk in target.read_chunks(workspace_id="ws")}
    assert set(held) == {"kept#0", "edited#0"}, "the deleted chunk stays deleted, the lost one is pruned"
    assert held["edited#0"].text == "new text" and held["edited#0"].version == 9, "the older copy did not overwrite"
    assert held["kept#0"].version == 5 and len(held["kept#0"].vector) == embedder.dimension


def test_pi_generations_shows_the_build_and_settings_reverted_abandon_it(workspace, pi_env):
    switch_model(pi_env, workspace, "hashing-256")
    generations.advance()
    out = CliRunner().invoke(build_cli(), ["generations"], catch_exceptions=False).output
    assert '"generation": "g2"' in out and '"status": "building"' in out and '"model": "hashing-256"' in out
    switch_model(pi_env, workspace, "sentence-transformers/all-MiniLM-L6-v2")  # back to the live model
    assert generations.advance()["abandoned"] == "g2"
    assert runtime.generations().building is None
    assert_search_answers(workspace)
    wait_for(lambda: "g2" in generations.advance().get("dropped", []), timeout=30, interval=0.2)
    result = CliRunner().invoke(build_cli(), ["generations", "advance", "--until-live"], catch_exceptions=False)
    assert result.exit_code == 0 and '"live": "g1"' in result.output


@pytest.mark.slow
def test_a_rolling_model_change_through_a_real_worker_and_beat_never_shows_an_empty_or_mixed_index(
    plane_db, plane_settings, pi_env, tmp_path
):
    """An operator restarts the worker (with beat) on another model while users search and edit: beat builds, copies,
    swaps and drops on its own; every search meanwhile answers right; edits made during the build are found after."""
    env = {
        **FAST,
        "PLANE_DATABASE_URL": plane_db.url,
        "CELERY_DEFAULT_QUEUE": f"pi_test_{uuid.uuid4().hex}",
        "CELERY_VECTOR_SYNC_INTERVAL": "1",
        "PI_GENERATION_INTERVAL": "1",
        "PI_GENERATION_CHECK_SECONDS": "0.2",
        "HF_HUB_OFFLINE": "1",
    }
    pi_env(**env)
    workspace = vectorized(plane_db, env)
    worker = WorkerProcess({**env, "PI_EMBEDDING_MODEL": "hashing-256"}, tmp_path / "worker.log", beat=True)
    searches = 0
    try:
        worker.wait_ready()
        plane, ws, items = workspace["plane"], workspace["ws"], workspace["items"]
        edited = False

        def live_now() -> bool:
            nonlocal searches, edited
            assert_search_answers(workspace)  # the test process searches whatever generation is live, with its model
            searches += 1
            if not edited and runtime.generations().building is not None:
                plane.update(schema.issues, items["Dark mode"]["id"], description_html="<p>Sunset timer</p>")
                edited = True
            return runtime.generations().live.model == "hashing-256"

        wait_for(live_now, timeout=120, interval=0.1, message="the new generation live", fatal=AssertionError)
        assert edited, "an edit was made while the new generation was built"
        wait_for(lambda: first(workspace, "sunset timer", "vector") == "Dark mode", 60, 0.2, "the edit, in the new generation")
        (sink,) = runtime.get_sinks()
        assert {len(chunk.vector) for chunk in sink.read_chunks(workspace_id=ws)} == {256}
        wait_for(lambda: "g1" not in {row["generation"] for row in generations.status()}, 60, 0.2, "the old one dropped")
        assert_search_answers(workspace)
        assert searches > 3
    finally:
        worker.stop()


def test_after_a_model_change_an_unchanged_text_is_not_embedded_again(embedded_workspace, pi_env):
    """The ledger's hashes do not hold the model (the generation does): after the swap, a work item whose priority
    alone changed gets a metadata update, not a new embedding the copy already made with the new model."""
    workspace = embedded_workspace
    switch_model(pi_env, workspace, "hashing-256")
    advance_until_live(workspace)
    workspace["plane"].update(schema.issues, workspace["items"]["Billing export"]["id"], priority="urgent")
    result = live_sync(workspace["ws"])
    assert (result["chunks_embedded"], result["chunks_updated"]) == (0, 1), result


@pytest.mark.parametrize("pi_database", ["sqlite", "postgresql"])
def test_two_passes_at_once_start_one_generation(plane_db, plane_settings, pi_env, request, pi_database):
    """``pi generations advance`` run while beat's pass runs: one new generation, not one abandoning the other, nor
    two building at once (a start waits for the other's lock on the live row, then sees its generation)."""
    import threading

    env = {**FAST, "PI_DATABASE_URL": request.getfixturevalue("postgres_url")} if pi_database == "postgresql" else dict(FAST)
    pi_env(**env)
    switch_model(pi_env, vectorized(plane_db, env), "hashing-256")
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(generations.advance())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 3
    # (on a loaded machine a pass may already copy and swap: which one is live does not matter here)
    assert sorted(row["generation"] for row in generations.status()) == ["g1", "g2"]
    assert not any("abandoned" in result for result in results)


def test_a_copy_that_lost_its_lease_stops_and_leaves_the_scope_to_the_next_pass(embedded_workspace, pi_env, monkeypatch):
    """A pass that stalled past the builder lease (another pass took over) stops at its next page, with no error and
    nothing marked copied; the scope is copied by whoever holds the lease."""
    from pi_framework.sync import current_leases

    switch_model(pi_env, embedded_workspace, "hashing-256")
    database = get_database(runtime.get_registry().settings)
    started = generations.advance()["started"]
    wait_for(lambda: state.copy_may_start(database, started, generations.settle_seconds()), timeout=10, interval=0.05)
    real = state.pending_scopes

    def taken_over(database, generation):  # noqa: ANN001, ANN202
        current_leases().seize(generations.BUILDER_LEASE, "another pass")
        return real(database, generation)

    monkeypatch.setattr(state, "pending_scopes", taken_over)
    result = generations.advance()
    assert "error" not in result and "swapped" not in result and not result.get("scopes_copied")
    assert {scope for scope, _ in real(database, started)} == {"", embedded_workspace["ws"]}
    monkeypatch.undo()
    current_leases().release(generations.BUILDER_LEASE, "another pass")
    advance_until_live(embedded_workspace)


def test_a_model_that_cannot_load_never_stops_the_live_writes(embedded_workspace, pi_env):
    """A typo in PI_EMBEDDING_MODEL (fastembed cannot load it offline): the build cannot go on and says why in `pi
    health`, while live sync keeps the live generation current; correcting the setting abandons the build."""
    workspace = embedded_workspace
    pi_env(**{**workspace["env"], "PI_EMBEDDER": "fastembed", "PI_EMBEDDING_MODEL": "no-such-org/no-such-model"})
    database = get_database(runtime.get_registry().settings)
    started = generations.advance()["started"]
    wait_for(lambda: state.copy_may_start(database, started, generations.settle_seconds()), timeout=10, interval=0.05)
    assert "error" in generations.advance()
    workspace["plane"].update(schema.issues, workspace["items"]["Dark mode"]["id"], description_html="<p>Sunset timer</p>")
    assert live_sync(workspace["ws"])["status"] == "success", "the live generation is written without the broken mirror"
    assert first(workspace, "sunset timer", "text") == "Dark mode"
    assert_search_answers(workspace)
    health = run_health_checks(runtime.get_registry())["checks"]["index_generations"]
    assert not health["ok"] and "no-such-model" in health["error"]
    switch_model(pi_env, workspace, "sentence-transformers/all-MiniLM-L6-v2")  # the live model again
    assert generations.advance()["abandoned"] == started
    assert run_health_checks(runtime.get_registry())["checks"]["index_generations"]["ok"]
