"""pi_comments against a real PostgreSQL with Plane's schema and the plugin's own comments table, through the public API."""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pi_comments.sample import comment
from pi_comments.schema import issue_comments
from pi_comments.source import CommentsSource
from sqlalchemy import inspect, select

from pi_framework.api import JobStatus, get_registry, jobs, live_sync, plane_schema, search, vectorize
from pi_framework.testing.plane import create_sqlite_plane
from pi_framework.testing.source_contract import SourceContract

issues, projects, states = plane_schema.issues, plane_schema.projects, plane_schema.states
PLUGIN = Path(__file__).parents[1]


def thread(plane_db, add_comment, identifier="WEB"):
    """A workspace with a project (WEB), a work item WEB-1 with two comments, and WEB-2 with one."""
    owner = plane_db.user()
    workspace = plane_db.workspace(owner)
    project = plane_db.project(workspace, identifier=identifier, name="Website")
    started, triage = plane_db.state(project, "started"), plane_db.state(project, "triage")
    item = plane_db.issue(project, "Checkout button does nothing", state=started, created_by_id=owner["id"])
    other = plane_db.issue(project, "Newsletter signup", state=started, created_by_id=owner["id"])
    author = plane_db.user()
    first = add_comment(item, "<p>Reproduced on <b>Safari 17</b>: the Stripe sheet never opens.</p>", author)
    second = add_comment(item, "<p>Rolled back the canary.</p>", owner)
    elsewhere = add_comment(other, "<p>Double opt-in is required in Germany.</p>", owner)
    return {"owner": owner, "author": author, "workspace": workspace, "project": project, "started": started,
            "triage": triage, "item": item, "other": other, "first": first, "second": second,
            "elsewhere": elsewhere}  # fmt: skip


def cid(comment) -> str:
    return f"comments:{comment['id']}"


def drain(source, workspace_id, cursor):
    changes = source.changes(workspace_id, cursor)
    documents = list(changes.documents)
    return documents, changes.cursor()


def settled(source, workspace_id):
    """A cursor with nothing pending (the first scan after a full pass re-reads the overlap window once)."""
    _, cursor = drain(source, workspace_id, None)
    _, cursor = drain(source, workspace_id, cursor)
    return cursor


def upserts(documents) -> dict:
    return {document.id: document for document in documents if not document.deleted}


def deletions(documents) -> set[str]:
    return {document.id for document in documents if document.deleted}


# ---------------------------------------------------------------------- the contract every workspace source passes
class TestCommentsSourceContract(SourceContract):
    @pytest.fixture
    def workspaces(self, plane_db, add_comment):
        return tuple(thread(plane_db, add_comment)["workspace"]["id"] for _ in range(2))

    @pytest.fixture
    def edit(self, plane_db):
        """The edit that is hardest on a comments source: its work item (WEB-2, one comment) is renamed."""

        def edit(workspace_id: str) -> str:
            issue_id, comment_id = lone_comment(plane_db, workspace_id)
            plane_db.update(issues, issue_id, name="Newsletter signup with double opt-in")
            return f"comments:{comment_id}"

        return edit

    @pytest.fixture
    def hide(self, plane_db):
        """The way a comment usually disappears: its work item (WEB-2, one comment) is archived."""

        def hide(workspace_id: str) -> str:
            issue_id, comment_id = lone_comment(plane_db, workspace_id)
            plane_db.archive(issues, issue_id)
            return f"comments:{comment_id}"

        return hide


def lone_comment(plane_db, workspace_id: str) -> tuple[str, str]:
    """``(work item, comment)`` ids of WEB-2 of :func:`thread`'s workspace, the work item with a single comment."""
    with plane_db.engine.connect() as connection:
        issue_id = connection.scalar(select(issues.c.id).where(issues.c.workspace_id == workspace_id, issues.c.sequence_id == 2))
        return issue_id, connection.scalar(select(issue_comments.c.id).where(issue_comments.c.issue_id == issue_id))


# ---------------------------------------------------------------------- the table and the document
def test_the_declared_table_matches_the_reference_ddl(plane_db) -> None:
    real = {column["name"]: column["nullable"] for column in inspect(plane_db.engine).get_columns("issue_comments")}
    assert {column.name: column.nullable for column in issue_comments.columns} == real


def test_a_comment_says_which_work_item_it_is_on_and_carries_its_project(source, plane_db, add_comment) -> None:
    world = thread(plane_db, add_comment)
    documents = {document.id: document for document in source.iter_documents(world["workspace"]["id"])}
    assert set(documents) == {cid(world["first"]), cid(world["second"]), cid(world["elsewhere"])}
    first = documents[cid(world["first"])]
    assert first.source == first.kind == "comments" and first.workspace_id == world["workspace"]["id"]
    assert first.title == "Comment on WEB-1: Checkout button does nothing" and first.key == "WEB-1"
    assert first.body_format == "html" and "Safari 17" in first.body
    assert first.project_ids == [world["project"]["id"]]
    assert first.metadata["issue_id"] == world["item"]["id"] and first.metadata["author"] == world["author"]["id"]
    assert first.metadata["created_by"] == world["owner"]["id"], "the guest rule looks at the work item's creator"
    assert documents[cid(world["elsewhere"])].key == "WEB-2"
    assert json.loads(json.dumps(first.metadata)) == first.metadata


# ---------------------------------------------------------------------- visibility: the work item's, and its own
HIDE = {
    "comment deleted": lambda db, w: db.soft_delete(issue_comments, w["first"]["id"]),
    "item deleted": lambda db, w: db.soft_delete(issues, w["item"]["id"]),
    "item archived": lambda db, w: db.archive(issues, w["item"]["id"]),
    "item made a draft": lambda db, w: db.update(issues, w["item"]["id"], is_draft=True),
    "item moved to triage": lambda db, w: db.update(issues, w["item"]["id"], state_id=w["triage"]["id"]),
    "state regrouped to triage": lambda db, w: db.update(states, w["started"]["id"], group="triage"),
    "project archived": lambda db, w: db.archive(projects, w["project"]["id"]),
    "project deleted": lambda db, w: db.soft_delete(projects, w["project"]["id"]),
}
#: the comments each way hides (the state and the project hold both work items)
HIDDEN = {
    "comment deleted": ("first",),
    "item deleted": ("first", "second"),
    "item archived": ("first", "second"),
    "item made a draft": ("first", "second"),
    "item moved to triage": ("first", "second"),
    "state regrouped to triage": ("first", "second", "elsewhere"),
    "project archived": ("first", "second", "elsewhere"),
    "project deleted": ("first", "second", "elsewhere"),
}


@pytest.mark.parametrize("how", list(HIDE))
def test_a_hidden_comment_is_no_document_and_leaves_through_changes(source, plane_db, add_comment, how) -> None:
    world = thread(plane_db, add_comment)
    workspace_id = world["workspace"]["id"]
    cursor = settled(source, workspace_id)
    assert drain(source, workspace_id, cursor)[0] == []
    HIDE[how](plane_db, world)
    hidden = {cid(world[name]) for name in HIDDEN[how]}
    visible = {cid(world[name]) for name in ("first", "second", "elsewhere")} - hidden
    assert {document.id for document in source.iter_documents(workspace_id)} == visible
    assert set(source.visible_ids(workspace_id)) == visible
    assert {document_id for document_id, _ in source.visible_versions(workspace_id)} == visible
    documents, cursor = drain(source, workspace_id, cursor)
    assert deletions(documents) == hidden and not set(upserts(documents)) & hidden
    assert drain(source, workspace_id, cursor)[0] == [], "reported once"


def test_drafts_and_comments_on_hidden_items_are_never_documents(source, plane_db, add_comment) -> None:
    world = thread(plane_db, add_comment)
    draft = plane_db.issue(world["project"], "Maybe later", is_draft=True)
    in_triage = plane_db.issue(world["project"], "From the intake form", state=world["triage"])
    archived_project = plane_db.project(world["workspace"], archived_at=datetime.now(UTC))
    in_archived = plane_db.issue(archived_project, "Old")
    for item in (draft, in_triage, in_archived):
        add_comment(item, "<p>invisible</p>")
    add_comment(world["item"], "<p>deleted</p>", deleted_at=datetime.now(UTC))
    add_comment(plane_db.issue(plane_db.project(plane_db.workspace())), "<p>other workspace</p>")
    expected = {cid(world[name]) for name in ("first", "second", "elsewhere")}
    assert {document.id for document in source.iter_documents(world["workspace"]["id"])} == expected
    full = upserts(source.changes(world["workspace"]["id"], None).documents)
    assert set(full) == expected


def test_a_restored_work_item_brings_its_comments_back(source, plane_db, add_comment) -> None:
    world = thread(plane_db, add_comment)
    workspace_id = world["workspace"]["id"]
    plane_db.archive(issues, world["item"]["id"])
    cursor = settled(source, workspace_id)
    plane_db.update(issues, world["item"]["id"], archived_at=None)
    documents, _ = drain(source, workspace_id, cursor)
    assert set(upserts(documents)) == {cid(world["first"]), cid(world["second"])} and not deletions(documents)


# ---------------------------------------------------------------------- the parent's edits and moves are reflected
def test_editing_the_work_item_re_emits_its_comments_with_a_newer_version(source, plane_db, add_comment) -> None:
    world = thread(plane_db, add_comment)
    workspace_id = world["workspace"]["id"]
    cursor = settled(source, workspace_id)
    before = dict(source.visible_versions(workspace_id))
    later = datetime.now(UTC) + timedelta(seconds=5)
    plane_db.update(issues, world["item"]["id"], name="Checkout button unresponsive on iPad", updated_at=later)
    documents, cursor = drain(source, workspace_id, cursor)
    changed = upserts(documents)
    assert set(changed) == {cid(world["first"]), cid(world["second"])}, "only the edited item's comments"
    for document in changed.values():
        assert document.title == "Comment on WEB-1: Checkout button unresponsive on iPad"
        assert document.updated_at == later > before[document.id]
    after = dict(source.visible_versions(workspace_id))
    assert after[cid(world["first"])] == later, "a re-feed sees the same version"
    assert after[cid(world["elsewhere"])] == before[cid(world["elsewhere"])]
    assert drain(source, workspace_id, cursor)[0] == []


def test_moving_the_work_item_to_another_project_moves_its_comments(source, plane_db, add_comment) -> None:
    world = thread(plane_db, add_comment)
    workspace_id = world["workspace"]["id"]
    cursor = settled(source, workspace_id)
    api_project = plane_db.project(world["workspace"], identifier="API")
    plane_db.update(issues, world["item"]["id"], project_id=api_project["id"], sequence_id=7)
    documents, _ = drain(source, workspace_id, cursor)
    moved = upserts(documents)
    assert set(moved) == {cid(world["first"]), cid(world["second"])}
    for document in moved.values():
        assert document.project_ids == [api_project["id"]] and document.key == "API-7"
        assert document.title.startswith("Comment on API-7: ")


def test_renaming_the_project_re_keys_every_comment_in_it(source, plane_db, add_comment) -> None:
    world = thread(plane_db, add_comment)
    workspace_id = world["workspace"]["id"]
    cursor = settled(source, workspace_id)
    later = datetime.now(UTC) + timedelta(seconds=5)
    plane_db.update(projects, world["project"]["id"], identifier="SHOP", updated_at=later)
    documents, _ = drain(source, workspace_id, cursor)
    assert {document.key for document in upserts(documents).values()} == {"SHOP-1", "SHOP-2"}
    assert len(documents) == 3 and all(document.updated_at == later for document in documents)


def test_editing_a_comment_re_emits_it_alone(source, plane_db, add_comment) -> None:
    world = thread(plane_db, add_comment)
    workspace_id = world["workspace"]["id"]
    cursor = settled(source, workspace_id)
    later = datetime.now(UTC) + timedelta(seconds=5)
    plane_db.update(issue_comments, world["second"]["id"], comment_html="<p>Canary re-enabled.</p>", edited_at=later,
                    updated_at=later)  # fmt: skip
    (document,) = drain(source, workspace_id, cursor)[0]
    assert document.id == cid(world["second"]) and document.body == "<p>Canary re-enabled.</p>"
    assert document.updated_at == later and document.metadata["edited_at"] == later.isoformat()


def test_a_change_elsewhere_does_not_touch_these_comments(source, plane_db, add_comment) -> None:
    world, other = thread(plane_db, add_comment), thread(plane_db, add_comment)
    workspace_id = world["workspace"]["id"]
    cursor = settled(source, workspace_id)
    plane_db.update(issues, other["item"]["id"], name="Renamed in another workspace")
    plane_db.soft_delete(issues, other["other"]["id"])
    plane_db.issue(world["project"], "A new item without comments")
    assert drain(source, workspace_id, cursor)[0] == []


def test_a_hard_deleted_work_item_takes_its_comments_out_of_the_visible_set(source, plane_db, add_comment) -> None:
    """Django's cascade deletes the rows outright (no updated_at moves): the id reconcile removes them, by visible_ids."""
    world = thread(plane_db, add_comment)
    workspace_id = world["workspace"]["id"]
    with plane_db.engine.begin() as connection:
        connection.execute(issue_comments.delete().where(issue_comments.c.issue_id == world["item"]["id"]))
        connection.execute(issues.delete().where(issues.c.id == world["item"]["id"]))
    assert set(source.visible_ids(workspace_id)) == {cid(world["elsewhere"])}


# ---------------------------------------------------------------------- the demo's database: SQLite, Core tables
def test_the_source_reads_a_sqlite_plane_built_from_the_core_tables(tmp_path, pi_env) -> None:
    plane = create_sqlite_plane(str(tmp_path / "plane.sqlite"), [issue_comments])
    workspace = plane.workspace()
    project = plane.project(workspace, identifier="OPS")
    item = plane.issue(project, "Disk full on db-2")
    kept = comment(plane, item, "<p>Rotated the WAL archive.</p>", attachments=["https://example.com/df.png"])
    comment(plane, plane.issue(project, "Archived", archived_at=datetime.now(UTC).date()), "<p>hidden</p>")
    orphan = comment(plane, {**item, "id": "00000000-0000-4000-8000-000000000000"}, "<p>no work item (no FK in SQLite)</p>")
    source = CommentsSource(pi_env(PLANE_DATABASE_URL=f"sqlite:///{tmp_path / 'plane.sqlite'}"))
    (document,) = source.iter_documents(workspace["id"])
    assert document.id == cid(kept) and document.title == "Comment on OPS-1: Disk full on db-2"
    assert list(source.visible_ids(workspace["id"])) == [cid(kept)]
    first, cursor = drain(source, workspace["id"], None)
    assert set(upserts(first)) == {cid(kept)}
    plane.soft_delete(plane_schema.issues, item["id"])
    plane.update(issue_comments, orphan["id"], comment_html="<p>edited</p>")
    documents, _ = drain(source, workspace["id"], cursor)
    assert deletions(documents) == {cid(kept), cid(orphan)} and not upserts(documents)


# ---------------------------------------------------------------------- through the framework, unchanged
def members(plane_db, world):
    """The owner (admin, member of WEB, created WEB-1), a teammate (member of WEB), a stranger (workspace member, not in
    WEB) and a guest of WEB (who created nothing)."""
    workspace, project = world["workspace"], world["project"]
    people = {"owner": world["owner"], "teammate": plane_db.user(), "stranger": plane_db.user(), "guest": plane_db.user()}
    for name, user in people.items():
        plane_db.workspace_member(workspace, user, role=5 if name == "guest" else 20 if name == "owner" else 15)
    plane_db.project_member(project, people["owner"], role=20)
    plane_db.project_member(project, people["teammate"])
    plane_db.project_member(project, people["guest"], role=5)
    return {name: user["id"] for name, user in people.items()}


def found(query, workspace_id, user_id) -> list[str]:
    return [hit.document_id for hit in search(query, workspace_id, kinds=["comments"], user_id=user_id, mode="text")]


def test_the_framework_indexes_comments_for_the_work_items_readers_only(plane_db, add_comment, plane_settings, pi_env):
    pi_env(PI_EMBEDDER="hashing", PI_ACCESS_CACHE_TTL="0")  # membership read from Plane on every query
    assert "comments" in get_registry().sources
    world = thread(plane_db, add_comment)
    workspace_id, users = world["workspace"]["id"], members(plane_db, world)
    assert vectorize(workspace_id)["status"] == JobStatus.SUCCESS
    assert jobs().latest(workspace_id).live_sync_enabled

    hits = search("stripe sheet safari", workspace_id, kinds=["comments"], user_id=users["teammate"], mode="text")
    assert [hit.document_id for hit in hits] == [cid(world["first"])]
    assert hits[0].title == "Comment on WEB-1: Checkout button does nothing" and hits[0].key == "WEB-1"
    assert found("stripe sheet safari", workspace_id, users["owner"]) == [cid(world["first"])]
    assert found("stripe sheet safari", workspace_id, users["stranger"]) == [], "not a member of WEB: not readable"
    assert found("stripe sheet safari", workspace_id, plane_db.user()["id"]) == [], "not even in the workspace"
    assert found("stripe sheet safari", workspace_id, users["guest"]) == [], "a guest reads only their own items"
    plane_db.update(projects, world["project"]["id"], guest_view_all_features=True)
    assert found("stripe sheet safari", workspace_id, users["guest"]) == [cid(world["first"])]

    # the work item moves to a project the teammate is not in: its comments follow it
    api_project = plane_db.project(world["workspace"], identifier="API")
    plane_db.project_member(api_project, world["owner"], role=20)
    plane_db.update(issues, world["item"]["id"], project_id=api_project["id"], sequence_id=3)
    live_sync(workspace_id)
    assert found("stripe sheet safari", workspace_id, users["teammate"]) == []
    hits = search("stripe sheet safari", workspace_id, kinds=["comments"], user_id=users["owner"], mode="text")
    assert [hit.key for hit in hits] == ["API-3"] and hits[0].title.startswith("Comment on API-3: ")

    # the work item is deleted: its comments leave search
    plane_db.soft_delete(issues, world["item"]["id"])
    live_sync(workspace_id)
    assert found("stripe sheet safari", workspace_id, users["owner"]) == []
    assert found("double opt-in germany", workspace_id, users["owner"]) == [cid(world["elsewhere"])]


# ---------------------------------------------------------------------- written against the contract only
def framework_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "pi_framework"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "pi_framework":
            found += [(node.lineno, node.module)]
            if node.module == "pi_framework":
                found += [(node.lineno, f"pi_framework.{alias.name}") for alias in node.names]
    return found


@pytest.mark.parametrize(
    ("folder", "allowed"),
    [("pi_comments", ("pi_framework.api",)), ("tests", ("pi_framework.api", "pi_framework.testing"))],
)
def test_the_plugin_imports_only_the_api_and_its_tests_the_testing_kit_too(folder, allowed) -> None:
    paths = sorted((PLUGIN / folder).glob("**/*.py"))
    assert paths
    outside = [
        f"{path.relative_to(PLUGIN)} line {line}: {module}"
        for path in paths
        for line, module in framework_imports(path)
        if not any(module == prefix or module.startswith(prefix + ".") for prefix in allowed)
    ]
    assert not outside
