"""The issues source against a real PostgreSQL loaded with Plane's schema: visibility, removals, cursors, bad rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pi_issues import IssuesSource
from sqlalchemy import text

from pi_framework.plane import schema
from pi_framework.plane.sample import utcnow


@pytest.fixture
def source(plane_settings) -> IssuesSource:
    return IssuesSource(plane_settings)


@pytest.fixture
def ws(plane_db):
    """A workspace with one project (ENG) and its states."""
    workspace = plane_db.workspace()
    project = plane_db.project(workspace, identifier="ENG", name="Engineering")
    return {
        "workspace": workspace,
        "project": project,
        "started": plane_db.state(project, "started"),
        "triage": plane_db.state(project, "triage"),
    }


def drain(source: IssuesSource, workspace_id: str, cursor):
    changes = source.changes(workspace_id, cursor)
    documents = list(changes.documents)
    return documents, changes.cursor()


def settled(source: IssuesSource, workspace_id: str):
    """A cursor with nothing pending (the first scan after a full pass re-reads the overlap window once)."""
    _, cursor = drain(source, workspace_id, None)
    _, cursor = drain(source, workspace_id, cursor)
    return cursor


def upserts(documents) -> set[str]:
    return {document.id for document in documents if not document.deleted}


def deletions(documents) -> set[str]:
    return {document.id for document in documents if document.deleted}


def test_visible_issue_rules(plane_db, source, ws) -> None:
    project, workspace = ws["project"], ws["workspace"]
    visible = plane_db.issue(
        project, "Login fails", "<p>Users <strong>cannot</strong> log in</p>", state=ws["started"], priority="urgent"
    )
    no_state = plane_db.issue(project, "No state")
    plane_db.issue(project, "Draft", is_draft=True)
    plane_db.issue(project, "Archived", archived_at=utcnow().date())
    plane_db.issue(project, "Deleted", deleted_at=utcnow())
    plane_db.issue(project, "Triage", state=ws["triage"])
    archived_project = plane_db.project(workspace, archived_at=utcnow())
    plane_db.issue(archived_project, "In archived project")
    deleted_project = plane_db.project(workspace, deleted_at=utcnow())
    plane_db.issue(deleted_project, "In deleted project")
    plane_db.issue(plane_db.project(plane_db.workspace()), "Other workspace")

    documents = {document.id: document for document in source.iter_documents(workspace["id"])}
    assert set(documents) == {f"issues:{visible['id']}", f"issues:{no_state['id']}"}
    assert set(source.visible_ids(workspace["id"])) == set(documents)
    login = documents[f"issues:{visible['id']}"]
    assert login.key == "ENG-1" and login.title == "ENG-1 Login fails" and login.body_format == "html"
    assert login.workspace_id == workspace["id"] and login.project_ids == [project["id"]]
    assert login.metadata["state_group"] == "started" and login.metadata["priority"] == "urgent"
    assert login.metadata["project_identifier"] == "ENG" and login.metadata["draft"] is False


@pytest.mark.parametrize(
    "remove",
    ["soft delete", "archive", "draft", "triage", "archive project", "delete project", "rename project"],
)
def test_each_removal_path_is_a_change(plane_db, source, ws, remove) -> None:
    project = ws["project"]
    issue = plane_db.issue(project, "Payment webhook retries", state=ws["started"])
    document_id = f"issues:{issue['id']}"
    cursor = settled(source, ws["workspace"]["id"])
    assert drain(source, ws["workspace"]["id"], cursor)[0] == []

    actions = {
        "soft delete": lambda: plane_db.soft_delete(schema.issues, issue["id"]),
        "archive": lambda: plane_db.archive(schema.issues, issue["id"]),
        "draft": lambda: plane_db.update(schema.issues, issue["id"], is_draft=True),
        "triage": lambda: plane_db.update(schema.issues, issue["id"], state_id=ws["triage"]["id"]),
        # project-level changes do not touch the issue row: the project watermark finds them
        "archive project": lambda: plane_db.archive(schema.projects, project["id"]),
        "delete project": lambda: plane_db.soft_delete(schema.projects, project["id"]),
        "rename project": lambda: plane_db.update(schema.projects, project["id"], identifier="PAY"),
    }
    actions[remove]()
    documents, cursor = drain(source, ws["workspace"]["id"], cursor)
    if remove == "rename project":
        assert [document.key for document in documents] == [f"PAY-{issue['sequence_id']}"]
    else:
        assert deletions(documents) == {document_id} and not upserts(documents)
    assert drain(source, ws["workspace"]["id"], cursor)[0] == []


def test_state_moved_to_triage_group_hides_its_issues(plane_db, source, ws) -> None:
    issue = plane_db.issue(ws["project"], "Flaky test", state=ws["started"])
    cursor = settled(source, ws["workspace"]["id"])
    plane_db.update(schema.states, ws["started"]["id"], group="triage")
    documents, _ = drain(source, ws["workspace"]["id"], cursor)
    assert deletions(documents) == {f"issues:{issue['id']}"}


def test_many_rows_with_the_same_timestamp_are_all_seen_once(plane_db, source, ws) -> None:
    source.page_size = 7  # force several keyset pages inside one timestamp
    _, cursor = drain(source, ws["workspace"]["id"], None)
    stamp = utcnow()
    created = {f"issues:{plane_db.issue(ws['project'], f'Issue {n}', now=stamp)['id']}" for n in range(30)}
    documents, cursor = drain(source, ws["workspace"]["id"], cursor)
    assert len(documents) == 30 and upserts(documents) == created
    assert drain(source, ws["workspace"]["id"], cursor)[0] == []


def test_late_commit_with_an_older_timestamp_is_not_skipped(plane_db, source, ws) -> None:
    """A transaction stamps updated_at, a sync runs, then the transaction commits: the overlap window catches it."""
    _, cursor = drain(source, ws["workspace"]["id"], None)
    plane_db.issue(ws["project"], "Committed early")
    stamped_before_sync = utcnow() - timedelta(seconds=5)
    documents, cursor = drain(source, ws["workspace"]["id"], cursor)
    late = plane_db.issue(ws["project"], "Committed late", now=stamped_before_sync)
    documents, cursor = drain(source, ws["workspace"]["id"], cursor)
    assert upserts(documents) == {f"issues:{late['id']}"}
    assert drain(source, ws["workspace"]["id"], cursor)[0] == []


def test_clock_skew_an_app_server_ahead_does_not_hide_later_rows(plane_db, source, ws) -> None:
    """A row stamped 10 minutes in the future must not push the watermark past rows written afterwards."""
    _, cursor = drain(source, ws["workspace"]["id"], None)
    future = plane_db.issue(ws["project"], "From a fast clock", now=utcnow() + timedelta(minutes=10))
    documents, cursor = drain(source, ws["workspace"]["id"], cursor)
    assert upserts(documents) == {f"issues:{future['id']}"}
    normal = plane_db.issue(ws["project"], "From a correct clock")
    documents, cursor = drain(source, ws["workspace"]["id"], cursor)
    assert upserts(documents) == {f"issues:{normal['id']}"}  # the future row is not emitted again
    plane_db.update(schema.issues, future["id"], name="Edited", updated_at=utcnow() + timedelta(minutes=11))
    documents, cursor = drain(source, ws["workspace"]["id"], cursor)
    assert [document.title for document in documents] == [f"ENG-{future['sequence_id']} Edited"]


def test_an_edit_after_the_cursor_is_one_upsert_with_the_new_text(plane_db, source, ws) -> None:
    issue = plane_db.issue(ws["project"], "Old title", "<p>old body</p>")
    cursor = settled(source, ws["workspace"]["id"])
    plane_db.update(schema.issues, issue["id"], name="New title", description_html="<p>new body</p>")
    documents, _ = drain(source, ws["workspace"]["id"], cursor)
    assert len(documents) == 1 and documents[0].title.endswith("New title") and "new body" in documents[0].body


def test_bad_rows_are_indexed_where_meaningful_and_never_break_the_batch(plane_db, source, ws) -> None:
    project = ws["project"]
    rows = {
        "empty": plane_db.issue(project, "Empty description", ""),
        "empty p": plane_db.issue(project, "Empty paragraph", "<p></p>"),
        "image": plane_db.issue(project, "Only an image", '<p><img src="https://x/y.png"></p>'),
        "mention": plane_db.issue(
            project,
            "Only a mention",
            '<p><mention-component entity_identifier="u1" entity_name="user_mention"></mention-component></p>',
        ),
        "huge": plane_db.issue(project, "Huge", "<p>" + "lorem ipsum dolor sit amet " * 200_000 + "</p>"),
        "broken": plane_db.issue(project, "Broken HTML", "<div><p>unclosed <b>bold <i>italic</div></span>"),
        "emoji rtl": plane_db.issue(project, "🚀 إطلاق الإصدار الجديد", "<p>שלום עולם</p>"),
        "unknown priority": plane_db.issue(project, "Odd priority", priority="blocker"),
        "null stripped": plane_db.issue(project, "Null stripped", "<p>text</p>", description_stripped=None),
    }
    orphan_project = plane_db.project(ws["workspace"])
    orphan = plane_db.issue(orphan_project, "Project hard-deleted")
    with plane_db.engine.begin() as connection:  # Django deletes the issues first; a broken FK must not stop us
        connection.execute(text("ALTER TABLE issues DROP CONSTRAINT IF EXISTS issues_project_id_fkey"))
        connection.execute(text("DELETE FROM projects WHERE id = :id"), {"id": orphan_project["id"]})

    documents = {document.id: document for document in source.iter_documents(ws["workspace"]["id"])}
    assert set(documents) == {f"issues:{row['id']}" for row in rows.values()}
    assert f"issues:{orphan['id']}" not in documents
    assert documents[f"issues:{rows['unknown priority']['id']}"].metadata["priority"] == "none"
    assert documents[f"issues:{rows['emoji rtl']['id']}"].title.endswith("🚀 إطلاق الإصدار الجديد")


def test_the_cursor_of_a_full_pass_does_not_replay_recent_rows(plane_db, source, ws) -> None:
    """Rows written just before a full pass are not pending changes afterwards (only later edits are)."""
    rows = [plane_db.issue(ws["project"], f"Fresh {n}") for n in range(5)]
    documents, cursor = drain(source, ws["workspace"]["id"], None)
    assert len(documents) == 5
    assert drain(source, ws["workspace"]["id"], cursor)[0] == []
    plane_db.update(schema.issues, rows[0]["id"], name="Edited after the pass")
    assert upserts(drain(source, ws["workspace"]["id"], cursor)[0]) == {f"issues:{rows[0]['id']}"}


def test_labels_and_assignees_are_metadata_and_their_changes_are_changes(plane_db, source, ws) -> None:
    """A work item's labels (names; links and labels not deleted) and assignees (user ids) are in its metadata; a link
    added or removed, or a label renamed, re-evaluates exactly the work items it links, though ``issues.updated_at``
    does not move."""
    project, workspace_id = ws["project"], ws["workspace"]["id"]
    alice, bob = plane_db.user(), plane_db.user()
    bug, ui, gone = plane_db.label(project, "bug"), plane_db.label(project, "ui"), plane_db.label(project, "gone")
    first = plane_db.issue(project, "First", state=ws["started"], priority="high")
    second = plane_db.issue(project, "Second")
    plane_db.issue_label(first, bug)
    plane_db.issue_label(first, ui)
    plane_db.issue_label(first, gone)
    plane_db.soft_delete(schema.labels, gone["id"])
    removed = plane_db.issue_label(second, bug)
    plane_db.soft_delete(schema.issue_labels, removed["id"])
    plane_db.issue_assignee(first, bob)
    plane_db.issue_assignee(first, alice)

    documents = {document.id: document for document in source.iter_documents(workspace_id)}
    meta = documents[f"issues:{first['id']}"].metadata
    assert meta["labels"] == ["bug", "ui"] and meta["assignees"] == sorted([alice["id"], bob["id"]])
    assert (meta["identifier"], meta["state"], meta["state_group"], meta["priority"]) == (
        "ENG-1",
        ws["started"]["name"],
        "started",
        "high",
    )
    assert meta["created_at"] == first["created_at"].isoformat() and meta["updated_at"] == first["updated_at"].isoformat()
    assert documents[f"issues:{second['id']}"].metadata["labels"] == []
    assert dict(source.visible_metadata(workspace_id)) == {document.id: document.metadata for document in documents.values()}

    cursor = settled(source, workspace_id)
    plane_db.issue_assignee(second, alice)
    changed, cursor = drain(source, workspace_id, cursor)
    assert upserts(changed) == {f"issues:{second['id']}"}
    assert changed[0].metadata["assignees"] == [alice["id"]]
    _, cursor = drain(source, workspace_id, cursor)  # the overlap window's re-read
    plane_db.update(schema.labels, bug["id"], name="defect")
    changed, cursor = drain(source, workspace_id, cursor)
    assert upserts(changed) == {f"issues:{first['id']}"}, "a renamed label re-evaluates the items carrying it"
    assert changed[0].metadata["labels"] == ["defect", "ui"]
