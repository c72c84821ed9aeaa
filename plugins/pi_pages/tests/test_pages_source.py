"""The pages source against a real PostgreSQL with Plane's schema: visibility, project links, privacy, changes."""

from __future__ import annotations

import pytest
from pi_pages import PagesSource

from pi_framework.plane import schema
from pi_framework.plane.sample import utcnow


@pytest.fixture
def source(plane_settings) -> PagesSource:
    return PagesSource(plane_settings)


def drain(source: PagesSource, workspace_id: str, cursor):
    changes = source.changes(workspace_id, cursor)
    return list(changes.documents), changes.cursor()


def settled(source: PagesSource, workspace_id: str):
    _, cursor = drain(source, workspace_id, None)
    return drain(source, workspace_id, cursor)[1]


def test_visible_pages_project_links_and_privacy(plane_db, source) -> None:
    owner = plane_db.user()
    workspace = plane_db.workspace(owner)
    alpha, beta = plane_db.project(workspace), plane_db.project(workspace)
    archived = plane_db.project(workspace, archived_at=utcnow())
    wiki = plane_db.page(workspace, name="Onboarding", description_html="<h1>Welcome</h1><p>Read this first</p>")
    shared = plane_db.page(workspace, name="Runbook", projects=(alpha, beta))
    private = plane_db.page(workspace, owner=owner, name="My notes", access=1, projects=(alpha,))
    plane_db.page(workspace, name="Only in an archived project", projects=(archived,))
    plane_db.page(workspace, name="Archived page", archived_at=utcnow().date())
    plane_db.page(workspace, name="Deleted page", deleted_at=utcnow())
    unlinked = plane_db.page(workspace, name="Unlinked project page", projects=(beta,))
    with plane_db.engine.begin() as connection:
        connection.execute(
            schema.project_pages.update().where(schema.project_pages.c.page_id == unlinked["id"]).values(deleted_at=utcnow())
        )

    documents = {document.id: document for document in source.iter_documents(workspace["id"])}
    assert set(documents) == {f"pages:{wiki['id']}", f"pages:{shared['id']}", f"pages:{private['id']}"}
    assert set(source.visible_ids(workspace["id"])) == set(documents)
    assert documents[f"pages:{shared['id']}"].project_ids == sorted([alpha["id"], beta["id"]])
    assert documents[f"pages:{wiki['id']}"].project_ids == [] and documents[f"pages:{wiki['id']}"].metadata["is_global"]
    assert documents[f"pages:{private['id']}"].owner_id == owner["id"] and documents[f"pages:{private['id']}"].metadata["private"]
    assert documents[f"pages:{shared['id']}"].owner_id is None


def test_link_and_project_changes_reach_the_page(plane_db, source) -> None:
    workspace = plane_db.workspace()
    project = plane_db.project(workspace)
    page = plane_db.page(workspace, name="Design doc", projects=(project,))
    document_id = f"pages:{page['id']}"
    cursor = settled(source, workspace["id"])
    assert drain(source, workspace["id"], cursor)[0] == []

    other = plane_db.project(workspace)
    plane_db.project_page(other, page)  # linked to a second project: project_ids change, the page row does not
    documents, cursor = drain(source, workspace["id"], cursor)
    assert [(document.id, document.project_ids) for document in documents] == [
        (document_id, sorted([project["id"], other["id"]]))
    ]

    plane_db.archive(schema.projects, project["id"])
    documents, cursor = drain(source, workspace["id"], cursor)
    assert [(document.id, document.deleted, document.project_ids) for document in documents] == [
        (document_id, False, [other["id"]])
    ]

    plane_db.soft_delete(schema.projects, other["id"])  # no live project left: the page leaves the index
    documents, cursor = drain(source, workspace["id"], cursor)
    assert [(document.id, document.deleted) for document in documents] == [(document_id, True)]


@pytest.mark.parametrize("remove", ["soft delete", "archive", "make private"])
def test_page_changes(plane_db, source, remove) -> None:
    workspace = plane_db.workspace()
    page = plane_db.page(workspace, name="Roadmap")
    cursor = settled(source, workspace["id"])
    {
        "soft delete": lambda: plane_db.soft_delete(schema.pages, page["id"]),
        "archive": lambda: plane_db.archive(schema.pages, page["id"]),
        "make private": lambda: plane_db.update(schema.pages, page["id"], access=1),
    }[remove]()
    documents, cursor = drain(source, workspace["id"], cursor)
    assert len(documents) == 1
    if remove == "make private":
        assert not documents[0].deleted and documents[0].owner_id == workspace["owner_id"]
    else:
        assert documents[0].deleted
    assert drain(source, workspace["id"], cursor)[0] == []
