"""The Plane sources pass the same source contract a third-party source would run."""

from __future__ import annotations

import pytest
from pi_issues import IssuesSource
from pi_pages import PagesSource

from pi_framework.testing.source_contract import SourceContract


@pytest.fixture
def workspaces(plane_db, plane_settings):
    ids = []
    for _ in range(2):
        workspace = plane_db.workspace()
        project = plane_db.project(workspace)
        plane_db.issue(project, name="Checkout fails on Safari", description_html="<p>Payment button does nothing.</p>")
        page = plane_db.page(workspace, name="Release checklist", description_html="<h1>Steps</h1><p>Tag, build, ship.</p>")
        plane_db.project_page(project, page)
        ids.append(workspace["id"])
    return tuple(ids)


class TestIssuesSource(SourceContract):
    @pytest.fixture
    def source(self, plane_settings):
        return IssuesSource(plane_settings)


class TestPagesSource(SourceContract):
    @pytest.fixture
    def source(self, plane_settings):
        return PagesSource(plane_settings)
