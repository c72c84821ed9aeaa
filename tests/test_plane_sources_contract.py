"""The Plane sources pass the same source contract a third-party source would run (pi_cycles runs it in its own tests)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pi_issues import IssuesSource
from pi_pages import PagesSource
from sqlalchemy import select

from pi_framework.plane import schema
from pi_framework.testing.source_contract import SourceContract


@pytest.fixture
def workspaces(plane_db, plane_settings):
    ids = []
    for _ in range(2):
        workspace = plane_db.workspace()
        project = plane_db.project(workspace)
        plane_db.issue(project, name="Checkout fails on Safari", description_html="<p>Payment button does nothing.</p>")
        plane_db.issue(project, name="Invoices miss the VAT number", description_html="<p>Since the 2.3 release.</p>")
        for name in ("Release checklist", "Onboarding guide"):
            page = plane_db.page(workspace, name=name, description_html="<h1>Steps</h1><p>Tag, build, ship.</p>")
            plane_db.project_page(project, page)
        ids.append(workspace["id"])
    return tuple(ids)


def first_row(plane_db, table, workspace_id: str) -> str:
    with plane_db.engine.connect() as connection:
        return connection.scalar(select(table.c.id).where(table.c.workspace_id == workspace_id).order_by(table.c.id))


def editor(plane_db, table, **text):
    def edit(workspace_id: str) -> str:
        row_id = first_row(plane_db, table, workspace_id)
        plane_db.update(table, row_id, **text)  # updated_at moves to now, as Django's save() does
        return f"{table.name}:{row_id}"

    return edit


def archiver(plane_db):
    def archive(workspace_id: str) -> str:
        issue_id = first_row(plane_db, schema.issues, workspace_id)
        plane_db.archive(schema.issues, issue_id)
        return f"issues:{issue_id}"

    return archive


class TestIssuesSource(SourceContract):
    @pytest.fixture
    def source(self, plane_settings):
        return IssuesSource(plane_settings)

    @pytest.fixture
    def edit(self, plane_db):
        return editor(plane_db, schema.issues, name="Checkout fails on Safari 17", description_html="<p>Since 2.4.</p>")

    @pytest.fixture
    def hide(self, plane_db):
        return archiver(plane_db)


class TestPagesSource(SourceContract):
    @pytest.fixture
    def source(self, plane_settings):
        return PagesSource(plane_settings)

    @pytest.fixture
    def edit(self, plane_db):
        return editor(plane_db, schema.pages, name="Release checklist v2", description_html="<p>Tag, build, test, ship.</p>")

    @pytest.fixture
    def hide(self, plane_db):
        def soft_delete(workspace_id: str) -> str:
            page_id = first_row(plane_db, schema.pages, workspace_id)
            plane_db.soft_delete(schema.pages, page_id, datetime.now(UTC))
            return f"pages:{page_id}"

        return soft_delete


# ---------------------------------------------------------------------- the contract catches broken sources
class CursorIgnoringIssues(IssuesSource):
    def changes(self, workspace_id, cursor):
        return super().changes(workspace_id, None)


class LeakyIssues(IssuesSource):
    """Upserts hidden issues when they change (their visibility is never checked)."""

    def evaluate(self, row, workspace_id, *relations):  # relations: labels and assignees, read in batches when given
        return self.build(row, lambda row: self.document(row, *relations))


class DatetimeCursorIssues(IssuesSource):
    def changes(self, workspace_id, cursor):
        changes = super().changes(workspace_id, cursor)
        return type(changes)(changes.documents, cursor=lambda: {"at": datetime.now(UTC)})


class ReservedNameIssues(IssuesSource):
    name = "plans"


def test_the_contract_fails_a_source_that_ignores_its_cursor(plane_settings, workspaces) -> None:
    with pytest.raises(AssertionError, match="rule 'nothing changed, nothing yielded': .*cursor ignored"):
        SourceContract().test_a_scan_from_a_json_round_tripped_cursor_with_nothing_changed_yields_nothing(
            CursorIgnoringIssues(plane_settings), workspaces
        )


def test_the_contract_fails_a_source_that_upserts_a_hidden_document(plane_db, plane_settings, workspaces) -> None:
    hide = archiver(plane_db)
    with pytest.raises(
        AssertionError, match="rule 'a hidden document is never yielded as an upsert': a hidden document upserted"
    ):
        SourceContract().test_a_hidden_document_comes_back_from_the_cursor_as_deleted_and_never_as_an_upsert(
            LeakyIssues(plane_settings), workspaces, hide
        )


def test_the_contract_fails_a_cursor_that_is_not_json(plane_settings, workspaces) -> None:
    with pytest.raises(AssertionError, match="rule 'the cursor survives JSON': TypeError: .* not JSON serializable"):
        SourceContract().test_a_full_change_scan_yields_every_visible_document_of_its_workspace_only(
            DatetimeCursorIssues(plane_settings), workspaces
        )


def test_the_contract_fails_a_reserved_name(plane_settings) -> None:
    with pytest.raises(AssertionError, match="rule 'a complete workspace source with an accepted name': .*reserved"):
        SourceContract().test_is_a_complete_workspace_source_with_an_accepted_name(ReservedNameIssues(plane_settings))
