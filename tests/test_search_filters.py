"""Plane's filters end to end, on both sinks: work items from a Plane database, vectorized and live-synced, found by
``search`` / ``pi search`` filtered by state, state group, priority, labels, assignees and project.

A metadata-only change (state, priority, a label or assignee added or removed, a label renamed) embeds **nothing**
(a counting embedder) and still reaches the filters at the next live sync, by a partial update in the sink; a bulk
state change Plane makes without touching ``updated_at`` is found by the reconcile.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, update

from pi_framework import runtime
from pi_framework.cli import build_cli
from pi_framework.contract.sinks import Filters
from pi_framework.db.models import JobStatus
from pi_framework.plane import schema
from pi_framework.plane.sample import utcnow
from pi_framework.search import search
from pi_framework.sync.live import live_sync
from pi_framework.sync.vectorize import vectorize


class Counting:
    """Wraps the process's embedder and counts the texts it embeds (search's query vectors too: read it right after a
    sync)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.texts = 0
        embedder = runtime.get_embedder()
        original = embedder.embed

        def embed(texts: list[str]) -> Any:
            self.texts += len(texts)
            return original(texts)

        monkeypatch.setattr(embedder, "embed", embed)


@pytest.fixture(params=["embedded", "opensearch"])
def sink_env(request, plane_settings, pi_env) -> Iterator[str]:
    """The Plane database and one sink: the embedded index, or a real OpenSearch node under a prefix of its own."""
    if request.param == "embedded":
        pi_env(PI_EMBEDDER="hashing")
        yield "embedded"
        return
    url = request.getfixturevalue("opensearch_url")
    prefix = f"pif{uuid.uuid4().hex[:10]}"
    pi_env(PI_EMBEDDER="hashing", OPENSEARCH_URL=url, OPENSEARCH_INDEX_PREFIX=prefix, PI_SINKS="opensearch")
    yield "opensearch"
    from opensearchpy import OpenSearch

    client = OpenSearch(hosts=[url])
    client.indices.delete(index=f"{prefix}-*", ignore_unavailable=True)
    client.close()


@pytest.fixture
def board(plane_db, sink_env) -> dict[str, Any]:
    """A vectorized workspace: project WEB with states Todo / In Progress / Done, labels bug and ui, users alice and
    bob, four work items (three about login), and another project API with one."""
    owner = plane_db.user()
    workspace = plane_db.workspace(owner)
    web = plane_db.project(workspace, identifier="WEB")
    api = plane_db.project(workspace, identifier="API")
    alice, bob = plane_db.user(display_name="alice"), plane_db.user(display_name="bob")
    for user in (owner, alice, bob):
        plane_db.workspace_member(workspace, user)
        plane_db.project_member(web, user)
        plane_db.project_member(api, user)
    states = {
        "Todo": plane_db.state(web, "unstarted", name="Todo"),
        "In Progress": plane_db.state(web, "started", name="In Progress"),
        "Done": plane_db.state(web, "completed", name="Done"),
    }
    api_todo = plane_db.state(api, "unstarted", name="Todo")
    labels = {"bug": plane_db.label(web, "bug"), "ui": plane_db.label(web, "ui")}

    def item(project, name, state, priority, tags=(), people=()):
        row = plane_db.issue(project, name, f"<p>{name}: the login form needs work.</p>", state=state, priority=priority)
        for tag in tags:
            plane_db.issue_label(row, labels[tag])
        for person in people:
            plane_db.issue_assignee(row, person)
        return row

    issues = {
        "WEB-1": item(web, "Login page crashes", states["Todo"], "high", ["bug"], [alice]),
        "WEB-2": item(web, "Login button misaligned", states["In Progress"], "medium", ["ui"], [bob]),
        "WEB-3": item(web, "Login emails are slow", states["Done"], "low", ["bug", "ui"], [alice, bob]),
        "WEB-4": item(web, "Billing export", states["Todo"], "none"),
        "API-1": item(api, "Login token expiry", api_todo, "urgent", [], [bob]),
    }
    ws = workspace["id"]
    assert vectorize(ws)["status"] == JobStatus.SUCCESS
    assert live_sync(ws)["status"] == "success"
    return {
        "plane": plane_db,
        "ws": ws,
        "owner": owner,
        "alice": alice,
        "bob": bob,
        "states": states,
        "labels": labels,
        "issues": issues,
        "sink": sink_env,
    }


def keys(board: dict[str, Any], query: str = "login", **filters: Any) -> set[str]:
    hits = search(query, board["ws"], user_id=board["owner"]["id"], limit=20, filters=filters or None)
    return {hit.key for hit in hits}


def test_filters_find_the_right_work_items(board) -> None:
    alice, bob = board["alice"]["id"], board["bob"]["id"]
    assert keys(board) == {"WEB-1", "WEB-2", "WEB-3", "WEB-4", "API-1"}
    assert keys(board, state=["In Progress"]) == {"WEB-2"}
    assert keys(board, state=["Todo"]) == {"WEB-1", "WEB-4", "API-1"}
    assert keys(board, state_group=["completed", "started"]) == {"WEB-2", "WEB-3"}
    assert keys(board, priority=["high", "urgent"]) == {"WEB-1", "API-1"}
    assert keys(board, labels=["bug"]) == {"WEB-1", "WEB-3"}
    assert keys(board, labels=["ui"], assignees=[alice]) == {"WEB-3"}
    assert keys(board, assignees=[bob]) == {"WEB-2", "WEB-3", "API-1"}
    assert keys(board, project=["API"]) == {"API-1"}
    assert keys(board, project=[board["issues"]["WEB-1"]["project_id"]], state=["Todo"]) == {"WEB-1", "WEB-4"}
    assert keys(board, labels=["nothing"]) == set()
    for mode in ("text", "vector"):
        hits = search("login", board["ws"], user_id=board["owner"]["id"], mode=mode, limit=2, filters=Filters(assignees=[alice]))
        assert {hit.key for hit in hits} == {"WEB-1", "WEB-3"}, f"{mode}: the filter runs in the sink, the page stays full"
    (hit,) = search("crashes", board["ws"], user_id=board["owner"]["id"], filters={"labels": "bug", "priority": "high"})
    assert hit.key == "WEB-1"
    metadata = hit.metadata
    assert (metadata["identifier"], metadata["state"], metadata["state_group"], metadata["priority"]) == (
        "WEB-1",
        "Todo",
        "unstarted",
        "high",
    )
    assert metadata["labels"] == ["bug"] and metadata["assignees"] == [alice]
    assert metadata["created_at"] and metadata["updated_at"] and metadata["project_identifier"] == "WEB"
    with pytest.raises(ValueError, match="unknown filter"):
        search("login", board["ws"], filters={"colour": ["red"]})


def test_pi_search_filters_and_shows_identifier_state_and_priority(board) -> None:
    args = ["search", "login", "-w", board["ws"], "-u", board["owner"]["id"], "--mode", "text"]
    result = CliRunner().invoke(build_cli(), [*args, "--label", "bug", "--state-group", "unstarted"])
    assert result.exit_code == 0, result.output
    assert "WEB-1 · Login page crashes" in result.output
    assert "state Todo (unstarted) · priority high · labels bug · 1 assignee" in result.output
    assert "WEB-3" not in result.output and "WEB-2" not in result.output
    assignee = CliRunner().invoke(build_cli(), [*args, "--assignee", board["bob"]["id"], "--project", "WEB"])
    assert assignee.exit_code == 0 and "WEB-2" in assignee.output and "API-1" not in assignee.output


def test_a_metadata_only_change_embeds_nothing_and_reaches_the_filters(board, monkeypatch) -> None:
    plane, ws, issues, states = board["plane"], board["ws"], board["issues"], board["states"]
    alice, bob = board["alice"], board["bob"]
    counting = Counting(monkeypatch)
    plane.update(schema.issues, issues["WEB-1"]["id"], state_id=states["In Progress"]["id"])  # state (issue saved)
    plane.update(schema.issues, issues["WEB-4"]["id"], priority="urgent")  # priority
    plane.issue_label(issues["WEB-2"], board["labels"]["bug"])  # a label added: only the link row is new
    link = plane.issue_assignee(issues["WEB-4"], alice)  # an assignee added
    with plane.engine.begin() as connection:  # bob unassigned from WEB-3: the link soft-deleted (Model.delete)
        connection.execute(
            update(schema.issue_assignees)
            .where(schema.issue_assignees.c.issue_id == issues["WEB-3"]["id"], schema.issue_assignees.c.assignee_id == bob["id"])
            .values(deleted_at=utcnow(), updated_at=utcnow())
        )
    plane.update(schema.labels, board["labels"]["ui"]["id"], name="frontend")  # a label renamed

    result = live_sync(ws)
    assert result["status"] == "success", result
    assert counting.texts == 0, f"a metadata-only change embeds nothing ({result})"
    assert result["chunks_embedded"] == 0 and result["chunks_updated"] == 4, result  # WEB-1..4, one chunk each
    assert keys(board, state=["In Progress"]) == {"WEB-1", "WEB-2"}
    assert keys(board, priority=["urgent"]) == {"WEB-4", "API-1"}
    assert keys(board, labels=["bug"]) == {"WEB-1", "WEB-2", "WEB-3"}
    assert keys(board, labels=["ui"]) == set() and keys(board, labels=["frontend"]) == {"WEB-2", "WEB-3"}
    assert keys(board, assignees=[alice["id"]]) == {"WEB-1", "WEB-3", "WEB-4"}
    assert keys(board, assignees=[bob["id"]]) == {"WEB-2", "API-1"}

    counting.texts = 0
    again = live_sync(ws)
    assert again.get("chunks_updated", 0) == 0 and counting.texts == 0, "nothing left to do"
    plane.soft_delete(schema.issue_assignees, link["id"])
    plane.update(schema.issues, issues["WEB-4"]["id"], name="Billing export to CSV")  # the text changed: embedded
    result = live_sync(ws)
    assert counting.texts == result["chunks_embedded"] == 1
    assert keys(board, assignees=[alice["id"]]) == {"WEB-1", "WEB-3"}
    assert keys(board, priority=["urgent"]) == {"WEB-4", "API-1"}


def test_a_bulk_state_change_without_updated_at_is_reconciled(board, monkeypatch) -> None:
    """Plane's bulk update writes ``state_id`` alone (``updated_at`` stays), and a link deleted outright moves nothing:
    the reconcile compares every work item's metadata with the index and updates what differs, embedding nothing."""
    plane, ws, issues, states = board["plane"], board["ws"], board["issues"], board["states"]
    counting = Counting(monkeypatch)
    moved = [issues[key]["id"] for key in ("WEB-1", "WEB-2", "WEB-4")]
    with plane.engine.begin() as connection:
        connection.execute(update(schema.issues).where(schema.issues.c.id.in_(moved)).values(state_id=states["Done"]["id"]))
        connection.execute(delete(schema.issue_labels).where(schema.issue_labels.c.issue_id == issues["WEB-1"]["id"]))
    before = live_sync(ws)  # without the change feed, nothing tells the live sync (no updated_at moved)
    assert before.get("chunks_updated", 0) == 0 and keys(board, state=["Done"]) == {"WEB-3"}
    counting.texts = 0
    result = live_sync(ws, force_reconcile=True)
    assert result["status"] == "success", result
    assert result["reconcile_indexed"] == 3, result
    assert counting.texts == 0, "a bulk state change embeds nothing"
    assert keys(board, state=["Done"]) == {"WEB-1", "WEB-2", "WEB-3", "WEB-4"}
    assert keys(board, state_group=["completed"]) == {"WEB-1", "WEB-2", "WEB-3", "WEB-4"}
    assert keys(board, state=["Todo"]) == {"API-1"}
    assert keys(board, labels=["bug"]) == {"WEB-3"}
    # and a bulk change back: still nothing embedded
    with plane.engine.begin() as connection:
        connection.execute(
            update(schema.issues).where(schema.issues.c.id == issues["WEB-4"]["id"]).values(state_id=states["Todo"]["id"])
        )
    counting.texts = 0
    assert live_sync(ws, force_reconcile=True)["reconcile_indexed"] == 1 and counting.texts == 0
    assert keys(board, state=["Todo"]) == {"WEB-4", "API-1"}
