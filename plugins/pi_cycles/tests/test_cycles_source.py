"""pi_cycles against a real PostgreSQL with Plane's schema and the plugin's own cycle tables, through the public API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pi_cycles.schema import cycle_issues, cycles

from pi_framework.api import JobStatus, get_registry, jobs, live_sync, plane_schema, search, vectorize
from pi_framework.testing.source_contract import SourceContract

MARCH_3 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def sprint(plane_db, plane_cycles, name="Sprint 12", description="Ship checkout v2"):
    """A workspace with one project and a cycle of five linked work items: 3 counted (1 done), 2 not."""
    owner = plane_db.user()
    workspace = plane_db.workspace(owner)
    project = plane_db.project(workspace, identifier="ENG")
    started, completed = plane_db.state(project, "started"), plane_db.state(project, "completed")
    cycle = plane_cycles.cycle(
        project,
        name,
        description=description,
        start_date=MARCH_3,
        end_date=MARCH_3 + timedelta(days=13),
        created_by_id=owner["id"],
    )
    items = {
        "done": plane_db.issue(project, "Pay with Apple Pay", state=completed),
        "open": plane_db.issue(project, "Retry failed payments", state=started),
        "no state": plane_db.issue(project, "Receipt e-mails"),
        "archived": plane_db.issue(project, "Old coupon flow", state=completed, archived_at=MARCH_3.date()),
        "draft": plane_db.issue(project, "Maybe: crypto", is_draft=True),
    }
    links = {label: plane_cycles.add(cycle, issue) for label, issue in items.items()}
    return {"owner": owner, "workspace": workspace, "project": project, "cycle": cycle, "items": items, "links": links,
            "started": started, "completed": completed}  # fmt: skip


def only(documents):
    documents = list(documents)
    assert len(documents) == 1, documents
    return documents[0]


# ---------------------------------------------------------------------- the contract every workspace source passes
class TestCyclesSourceContract(SourceContract):
    @pytest.fixture
    def workspaces(self, plane_db, plane_cycles):
        return tuple(sprint(plane_db, plane_cycles)["workspace"]["id"] for _ in range(2))

    @staticmethod
    def cycle_of(plane_db, workspace_id: str) -> str:
        with plane_db.engine.connect() as connection:
            return connection.scalar(cycles.select().with_only_columns(cycles.c.id).where(cycles.c.workspace_id == workspace_id))

    @pytest.fixture
    def edit(self, plane_db):
        def edit(workspace_id: str) -> str:
            cycle_id = self.cycle_of(plane_db, workspace_id)
            plane_db.update(cycles, cycle_id, name="Sprint 12b", description="Ship checkout v3")  # updated_at: now
            return f"cycles:{cycle_id}"

        return edit

    @pytest.fixture
    def hide(self, plane_db):
        def hide(workspace_id: str) -> str:
            cycle_id = self.cycle_of(plane_db, workspace_id)
            plane_db.update(cycles, cycle_id, archived_at=datetime.now(UTC))
            return f"cycles:{cycle_id}"

        return hide


# ---------------------------------------------------------------------- the document
def test_the_document_says_what_the_sprint_is_and_how_far_along(source, plane_db, plane_cycles) -> None:
    world = sprint(plane_db, plane_cycles)
    document = only(source.iter_documents(world["workspace"]["id"]))
    assert document.id == f"cycles:{world['cycle']['id']}" and document.kind == "cycles"
    assert document.title == "Cycle Sprint 12"
    assert document.body == "Cycle Sprint 12 (2025-03-03 – 2025-03-16): Ship checkout v2, 3 work items, 1 done"
    assert document.project_ids == [world["project"]["id"]]
    assert document.metadata["created_by"] == world["owner"]["id"] and document.metadata["project_identifier"] == "ENG"
    assert json.loads(json.dumps(document.metadata)) == document.metadata


def test_days_are_in_the_cycles_time_zone_and_missing_dates_are_said(source, plane_db, plane_cycles) -> None:
    world = sprint(plane_db, plane_cycles)
    late_evening = datetime(2025, 3, 2, 20, 0, tzinfo=UTC)  # already March 3 in Kolkata
    plane_db.update(cycles, world["cycle"]["id"], start_date=late_evening, end_date=None, timezone="Asia/Kolkata")
    assert "(from 2025-03-03)" in only(source.iter_documents(world["workspace"]["id"])).body
    plane_db.update(cycles, world["cycle"]["id"], start_date=None, description="", timezone="Not/AZone")
    assert only(source.iter_documents(world["workspace"]["id"])).body == "Cycle Sprint 12 (no dates): 3 work items, 1 done"


@pytest.mark.parametrize("hide", ["cycle deleted", "cycle archived", "project archived", "project deleted"])
def test_hidden_cycles_are_not_documents_and_leave_through_changes(source, plane_db, plane_cycles, hide) -> None:
    world = sprint(plane_db, plane_cycles)
    workspace_id = world["workspace"]["id"]
    first = source.changes(workspace_id, None)
    assert [document.id for document in first.documents] == [f"cycles:{world['cycle']['id']}"]
    table, row_id, what = {
        "cycle deleted": (cycles, world["cycle"]["id"], "deleted_at"),
        "cycle archived": (cycles, world["cycle"]["id"], "archived_at"),
        "project archived": (plane_schema.projects, world["project"]["id"], "archived_at"),
        "project deleted": (plane_schema.projects, world["project"]["id"], "deleted_at"),
    }[hide]
    plane_db.update(table, row_id, **{what: datetime.now(UTC)})
    assert list(source.iter_documents(workspace_id)) == [] and list(source.visible_ids(workspace_id)) == []
    removal = only(source.changes(workspace_id, first.cursor()).documents)
    assert removal.deleted and removal.id == f"cycles:{world['cycle']['id']}"


@pytest.mark.parametrize(
    "change",
    ["item done", "item archived", "link removed", "item added", "state regrouped", "cycle renamed", "project renamed"],
)
def test_a_change_the_text_depends_on_re_emits_the_cycle_with_a_newer_version(source, plane_db, plane_cycles, change) -> None:
    world = sprint(plane_db, plane_cycles)
    workspace_id = world["workspace"]["id"]
    first = source.changes(workspace_id, None)
    before = only(first.documents)
    versions = dict(source.visible_versions(workspace_id))
    assert versions == {before.id: before.updated_at}
    later = datetime.now(UTC) + timedelta(seconds=5)
    expected = {
        "item done": "3 work items, 2 done",
        "item archived": "2 work items, 1 done",
        "link removed": "2 work items, 1 done",
        "item added": "4 work items, 1 done",
        "state regrouped": "3 work items, 2 done",
        "cycle renamed": "3 work items, 1 done",
        "project renamed": "3 work items, 1 done",
    }[change]
    if change == "item done":
        plane_db.update(plane_schema.issues, world["items"]["open"]["id"], state_id=world["completed"]["id"], updated_at=later)
    elif change == "item archived":
        plane_db.update(plane_schema.issues, world["items"]["open"]["id"], archived_at=later.date(), updated_at=later)
    elif change == "link removed":
        plane_db.update(cycle_issues, world["links"]["no state"]["id"], deleted_at=later, updated_at=later)
    elif change == "item added":
        plane_cycles.add(world["cycle"], plane_db.issue(world["project"], "Gift cards"), created_at=later, updated_at=later)
    elif change == "state regrouped":
        plane_db.update(plane_schema.states, world["started"]["id"], group="completed", updated_at=later)
    elif change == "cycle renamed":
        plane_db.update(cycles, world["cycle"]["id"], name="Sprint 12b", updated_at=later)
    else:
        plane_db.update(plane_schema.projects, world["project"]["id"], identifier="PAY", updated_at=later)
    after = only(source.changes(workspace_id, first.cursor()).documents)
    assert after.id == before.id and not after.deleted and after.body.endswith(expected)
    assert after.updated_at == later > before.updated_at
    assert dict(source.visible_versions(workspace_id)) == {after.id: later}, "a re-feed sees the same version"


def test_a_change_in_another_cycle_or_workspace_does_not_touch_this_one(source, plane_db, plane_cycles) -> None:
    world, other = sprint(plane_db, plane_cycles), sprint(plane_db, plane_cycles)
    workspace_id = world["workspace"]["id"]
    first = source.changes(workspace_id, None)
    versions = {document.id: document.updated_at for document in first.documents}
    later = datetime.now(UTC) + timedelta(seconds=5)
    plane_db.update(plane_schema.issues, other["items"]["open"]["id"], state_id=other["completed"]["id"], updated_at=later)
    lonely = plane_db.issue(world["project"], "Not in any cycle", updated_at=later, created_at=later)
    plane_db.update(plane_schema.issues, lonely["id"], name="Still not in a cycle", updated_at=later)
    for document in source.changes(workspace_id, first.cursor()).documents:  # overlap re-reads only, never a new version
        assert versions.get(document.id) == document.updated_at


# ---------------------------------------------------------------------- through the framework, unchanged
def test_the_framework_vectorizes_live_syncs_and_searches_cycles(plane_db, plane_cycles, plane_settings, pi_env) -> None:
    pi_env(PI_EMBEDDER="hashing")
    assert "cycles" in get_registry().sources
    world = sprint(plane_db, plane_cycles)
    workspace_id, owner = world["workspace"]["id"], world["owner"]
    plane_db.workspace_member(world["workspace"], owner, role=20)
    plane_db.project_member(world["project"], owner, role=20)
    stranger = plane_db.user()
    plane_db.workspace_member(world["workspace"], stranger)

    assert vectorize(workspace_id)["status"] == JobStatus.SUCCESS
    assert jobs().latest(workspace_id).live_sync_enabled
    cycle_id = f"cycles:{world['cycle']['id']}"
    hits = search("checkout sprint", workspace_id, kinds=["cycles"], user_id=owner["id"], mode="text")
    assert [hit.document_id for hit in hits] == [cycle_id] and "3 work items, 1 done" in hits[0].text
    assert not search("checkout sprint", workspace_id, kinds=["cycles"], user_id=stranger["id"], mode="text")

    plane_db.update(plane_schema.issues, world["items"]["open"]["id"], state_id=world["completed"]["id"])
    live_sync(workspace_id)
    hits = search("checkout sprint", workspace_id, kinds=["cycles"], user_id=owner["id"], mode="text")
    assert "3 work items, 2 done" in hits[0].text
    plane_db.update(cycles, world["cycle"]["id"], archived_at=datetime.now(UTC))
    live_sync(workspace_id)
    assert not search("checkout sprint", workspace_id, kinds=["cycles"], user_id=owner["id"], mode="text")
