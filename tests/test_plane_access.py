"""Issue 11: a user's access read from Plane (pi_framework.plane.access), search without a user, ``pi search``."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner
from loguru import logger

from pi_framework import runtime
from pi_framework.cli import build_cli
from pi_framework.contract.documents import Document
from pi_framework.contract.sinks import Hit, SearchQuery
from pi_framework.pipeline.indexer import Indexer
from pi_framework.plane import reset_plane_engine, schema
from pi_framework.plane.access import NO_ACCESS, Access, AccessUnavailable, clear_access_cache, resolve_access
from pi_framework.search import search
from pi_framework.sinks.opensearch import queries


@pytest.fixture
def plane(plane_db, pi_env):
    """A workspace with a member of one project; settings on that Plane database with a 60 s access cache."""
    reset_plane_engine()
    settings = pi_env(PLANE_DATABASE_URL=plane_db.url, PI_ACCESS_CACHE_TTL=60)
    clear_access_cache()
    user = plane_db.user()
    workspace = plane_db.workspace(owner=user)
    project = plane_db.project(workspace)
    plane_db.workspace_member(workspace, user, 15)
    membership = plane_db.project_member(project, user, 15)
    yield {"db": plane_db, "settings": settings, "user": user, "workspace": workspace, "project": project, "pm": membership}
    clear_access_cache()


def test_access_is_cached_for_the_ttl_only(plane, pi_env) -> None:
    workspace, user, project = plane["workspace"]["id"], plane["user"]["id"], plane["project"]["id"]
    assert resolve_access(workspace, user) == Access(workspace_member=True, projects=frozenset({project}))
    plane["db"].soft_delete(schema.project_members, plane["pm"]["id"])
    assert resolve_access(workspace, user).projects == {project}, "within the TTL the cached access is reused"
    clear_access_cache()
    assert resolve_access(workspace, user).projects == frozenset()
    pi_env(PLANE_DATABASE_URL=plane["db"].url, PI_ACCESS_CACHE_TTL=0)
    plane["db"].project_member(plane["project"], plane["user"], 5)
    assert resolve_access(workspace, user).guest_projects == {project}, "TTL 0: Plane is asked on every query"


def test_ids_that_are_not_uuids_have_no_access(plane) -> None:
    assert resolve_access("not-a-uuid", plane["user"]["id"]) == NO_ACCESS
    assert resolve_access(plane["workspace"]["id"], "bob' OR 1=1 --") == NO_ACCESS


def test_deleted_workspace_and_inactive_account_have_no_access(plane, pi_env) -> None:
    pi_env(PLANE_DATABASE_URL=plane["db"].url, PI_ACCESS_CACHE_TTL=0)
    workspace, user = plane["workspace"]["id"], plane["user"]["id"]
    plane["db"].update(schema.users, user, is_active=False)
    assert resolve_access(workspace, user) == NO_ACCESS
    plane["db"].update(schema.users, user, is_active=True)
    plane["db"].soft_delete(schema.workspaces, workspace)
    assert resolve_access(workspace, user) == NO_ACCESS


def test_unreachable_plane_refuses_rather_than_guesses(pi_env) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    reset_plane_engine()
    pi_env(PLANE_DATABASE_URL=f"postgresql://nobody@127.0.0.1:{port}/plane", PI_ACCESS_CACHE_TTL=0)
    with pytest.raises(AccessUnavailable):
        resolve_access("6f1a8f9e-52a4-4c49-9a3f-1f5e0b7c0d11", "0b7c0d11-52a4-4c49-9a3f-1f5e6f1a8f9e")
    reset_plane_engine()


def test_without_plane_a_user_keeps_only_content_outside_projects(pi_env) -> None:
    pi_env(PI_EMBEDDER="hashing")
    access = resolve_access("ws", "bob")
    assert access.workspace_member and not access.verified and not access.projects and not access.guest_projects


# ---------------------------------------------------------------------------------------------- search and pi search
@pytest.fixture
def indexed(plane, pi_env):
    pi_env(PLANE_DATABASE_URL=plane["db"].url, PI_ACCESS_CACHE_TTL=0, PI_EMBEDDER="hashing")
    workspace, project = plane["workspace"]["id"], plane["project"]["id"]
    documents = [
        Document(
            id="issues:1",
            source="issues",
            kind="issues",
            workspace_id=workspace,
            title="WEB-4 Search bar crashes on Safari",
            key="WEB-4",
            body="The search bar crashes.",
            project_ids=[project],
            metadata={"created_by": plane["user"]["id"]},
        ),
        Document(id="pages:wiki", source="pages", kind="pages", workspace_id=workspace, title="Wiki", body="search wiki"),
    ]
    assert Indexer().index(documents).failed == {}
    yield plane
    runtime.reset()


def test_search_without_a_user_returns_nothing_project_scoped(indexed) -> None:
    workspace = indexed["workspace"]["id"]
    assert {hit.document_id for hit in search("search", workspace)} == {"pages:wiki"}
    assert {hit.document_id for hit in search("search", workspace, user_id=indexed["user"]["id"])} == {"issues:1", "pages:wiki"}
    assert {hit.document_id for hit in search("search", workspace, all_projects=True)} == {"issues:1", "pages:wiki"}


def test_pi_search_prints_the_key_once_and_logs_all_projects(indexed) -> None:
    workspace, user = indexed["workspace"]["id"], indexed["user"]["id"]
    runner = CliRunner()
    result = runner.invoke(build_cli(), ["search", "safari", "-w", workspace, "--user", user, "--mode", "text"])
    assert result.exit_code == 0, result.output
    assert "[issues] WEB-4 · Search bar crashes on Safari  (score" in result.output
    assert "WEB-4 · WEB-4" not in result.output
    assert "no results" in runner.invoke(build_cli(), ["search", "safari", "-w", workspace, "--mode", "text"]).output
    logged: list[str] = []
    handler = logger.add(logged.append, level="INFO")
    try:
        result = runner.invoke(build_cli(), ["search", "safari", "-w", workspace, "--all-projects", "--mode", "text"])
    finally:
        logger.remove(handler)
    assert "WEB-4 · Search bar crashes on Safari" in result.output
    assert any("--all-projects" in line and workspace in line for line in logged), logged


def test_search_rechecks_every_hit_of_a_sink() -> None:
    """A sink whose filter is broken: search() drops what the query may not see (second line of defence)."""

    class LeakySink:
        name = "leaky"

        def search_text(self, query: SearchQuery) -> list[Hit]:
            return [
                Hit("a#0", "a", "issues", 1.0, workspace_id="w1", project_ids=["p-other"]),
                Hit("b#0", "b", "pages", 1.0, workspace_id="w1", owner_id="someone-else"),
                Hit("c#0", "c", "issues", 1.0, workspace_id="w2"),
                Hit("d#0", "d", "issues", 1.0, workspace_id="w1", project_ids=["p-guest"], metadata={"created_by": "u"}),
                Hit("e#0", "e", "issues", 1.0, workspace_id="w1", project_ids=["p-guest"], metadata={"created_by": "x"}),
                Hit("f#0", "f", "docs", 1.0),
            ]

    query = SearchQuery("w1", user_id="u", projects=["p-mine"], guest_projects=["p-guest"])
    assert [hit.document_id for hit in LeakySink().search_text(query) if query.allows(hit)] == ["d", "f"]
    anonymous = SearchQuery("w1")
    assert [hit.document_id for hit in LeakySink().search_text(anonymous) if anonymous.allows(hit)] == ["f"]
    assert [hit.document_id for hit in search("x", "w1", mode="text", sinks=[LeakySink()])] == ["f"]


# ---------------------------------------------------------------------------------------------- OpenSearch bodies
def test_opensearch_project_filter_bodies() -> None:
    missing = {"bool": {"must_not": {"exists": {"field": "project_ids"}}}}
    assert queries.project_filter(SearchQuery("w1")) == missing
    assert queries.project_filter(SearchQuery("w1", projects=None)) is None
    assert queries.project_filter(SearchQuery("w1", user_id="u", projects=["p2", "p1"], guest_projects=["g"])) == {
        "bool": {
            "should": [
                missing,
                {"terms": {"project_ids": ["p1", "p2"]}},
                {"bool": {"filter": [{"terms": {"project_ids": ["g"]}}, {"term": {"created_by": "u"}}]}},
            ],
            "minimum_should_match": 1,
        }
    }
    non_member = queries.search_filters(SearchQuery("w1", workspace_member=False))
    assert non_member[0] == {"bool": {"must_not": {"exists": {"field": "workspace_id"}}}}


def test_opensearch_indices_of_an_older_version_get_the_new_fields() -> None:
    old = queries.index_body(4, "issues")["mappings"]
    del old["properties"]["created_by"]
    assert queries.missing_fields(old) == {"created_by": {"type": "keyword"}}
    assert queries.missing_fields(queries.index_body(4, "issues")["mappings"]) == {}
