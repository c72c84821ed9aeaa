"""The access contract: a user finds exactly what Plane lets them read — for any sink. Subclass :class:`AccessContract`
in a test module and provide a ``sink`` fixture (empty, not yet ``ensure_ready()``'d), as for the sink contract::

    from pi_framework.testing.access_matrix import AccessContract

    class TestMySinkAccess(AccessContract):
        @pytest.fixture
        def sink(self, tmp_path):
            sink = MySink(...)
            yield sink
            sink.close()

Two layers:

* **sink level** (no Plane): chunks with ``project_ids`` / ``created_by`` / ``owner_id`` and :class:`SearchQuery`
  filters (``projects``, ``guest_projects``, ``workspace_member``), text and vector, adversarial query texts;
* **the matrix** (Plane's reference schema in PostgreSQL, the real ``issues`` and ``pages`` sources, the indexer,
  ``search()``): :class:`World` builds two workspaces whose users cover every membership case — admin, member,
  member of the secret project only, public project not joined, removed (``deleted_at``), deactivated
  (``is_active`` false), removed from the workspace (``deleted_at`` / ``is_active`` false on ``workspace_members``
  while the project membership row is still active), guest with and without ``guest_view_all_features``, member of
  the other workspace only, and no user — over issues and pages, public and private, in each project, in several
  projects, at workspace level, in the other workspace, and global docs. Every (workspace × user × mode × kinds)
  search is compared with an oracle written from the scenario (not from Plane's rows): nothing the user may not
  see, and everything they may. Membership changes in Plane are checked on the next query (``PI_ACCESS_CACHE_TTL=0``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import pytest
from loguru import logger

from pi_framework import runtime
from pi_framework.contract.documents import Chunk, Document
from pi_framework.contract.sinks import SearchQuery, Sink
from pi_framework.db import get_database
from pi_framework.pipeline.indexer import Indexer
from pi_framework.plane import reset_plane_engine, schema
from pi_framework.plane.access import clear_access_cache
from pi_framework.plane.sample import PlaneFactory, utcnow
from pi_framework.search import MODES, search

#: the word every item of the matrix contains, so one query can reach all of them
WORD = "zephyr"
LIMIT = 200
KIND_FILTERS: tuple[tuple[str, ...] | None, ...] = (None, ("issues",), ("pages",))
ADMIN, MEMBER, GUEST = 20, 15, 5

# ---------------------------------------------------------------------------------------------- Plane rows


# ---------------------------------------------------------------------------------------------- the scenario


@dataclass
class Item:
    """One indexed document and what decides who may read it (the oracle's view, labels not ids)."""

    label: str
    document_id: str
    kind: str
    workspace: str | None  # None: global content
    projects: tuple[str, ...] = ()
    private_owner: str | None = None
    creator: str | None = None  # issue creator / page owner: Plane's guest rule


@dataclass
class World:
    """Plane rows and the membership model they stand for; mutators change both, :meth:`visible` reads the model."""

    plane: PlaneFactory
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    workspaces: dict[str, dict[str, Any]] = field(default_factory=dict)
    projects: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: list[Item] = field(default_factory=list)
    #: (user, workspace) -> the workspace_members row; active when is_active and not deleted
    ws_rows: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: (user, project) -> the project_members row
    pm_rows: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    guest_all: set[str] = field(default_factory=set)
    archived: set[str] = field(default_factory=set)

    # ------------------------------------------------------------------ the oracle
    @staticmethod
    def _active(row: dict[str, Any] | None) -> bool:
        return row is not None and row["is_active"] and row["deleted_at"] is None

    def project_workspace(self, project: str) -> str:
        return next(label for label, ws in self.workspaces.items() if ws["id"] == self.projects[project]["workspace_id"])

    def visible(self, user: str | None, workspace: str, kinds: Sequence[str] | None = None) -> set[str]:
        """Document ids *user* may find searching *workspace*, by Plane's rules applied to the scenario."""
        found = set()
        for item in self.items:
            if kinds is not None and item.kind not in kinds:
                continue
            if item.workspace is None:
                found.add(item.document_id)
            elif item.workspace == workspace and self._may_read(user, item):
                found.add(item.document_id)
        return found

    def _may_read(self, user: str | None, item: Item) -> bool:
        if user is None:  # anonymous: public content that belongs to no project
            return item.private_owner is None and not item.projects
        if not self._active(self.ws_rows.get((user, item.workspace))):
            return False
        if item.private_owner is not None and item.private_owner != user:
            return False
        if not item.projects:
            return True
        for project in item.projects:
            row = self.pm_rows.get((user, project))
            if project in self.archived or not self._active(row):
                continue
            if row["role"] > GUEST or project in self.guest_all or item.creator == user:
                return True
        return False

    # ------------------------------------------------------------------ changes in Plane (and in the model)
    def join(self, user: str, project: str, role: int = MEMBER) -> None:
        self.pm_rows[(user, project)] = self.plane.project_member(self.projects[project], self.users[user], role)

    def leave(self, user: str, project: str) -> None:
        row = self.pm_rows[(user, project)]
        self.plane.soft_delete(schema.project_members, row["id"])
        row["deleted_at"] = utcnow()

    def set_project_member(self, user: str, project: str, **values: Any) -> None:
        row = self.pm_rows[(user, project)]
        self.plane.update(schema.project_members, row["id"], **values)
        row.update(values)

    def set_workspace_member(self, user: str, workspace: str, **values: Any) -> None:
        row = self.ws_rows[(user, workspace)]
        self.plane.update(schema.workspace_members, row["id"], **values)
        row.update(values)

    def set_guest_view_all(self, project: str, value: bool) -> None:
        self.plane.update(schema.projects, self.projects[project]["id"], guest_view_all_features=value)
        (self.guest_all.add if value else self.guest_all.discard)(project)

    def archive_project(self, project: str) -> None:
        """Archived in Plane: nobody reads it from the next query on, even before live sync removes its content."""
        self.plane.archive(schema.projects, self.projects[project]["id"])
        self.archived.add(project)

    def user_id(self, user: str | None) -> str | None:
        return None if user is None else self.users[user]["id"]

    def label(self, document_id: str) -> str:
        return next((item.label for item in self.items if item.document_id == document_id), document_id)


#: users of the matrix: label -> {workspace: workspace role}, {project: project role}, and changes applied after
USERS: dict[str, dict[str, Any]] = {
    "admin": {"workspaces": {"W1": ADMIN}, "projects": {"PUB": ADMIN, "SECRET": ADMIN, "GUESTED": ADMIN, "GUEST_ALL": ADMIN}},
    "member": {"workspaces": {"W1": MEMBER}, "projects": {"PUB": MEMBER}},
    "secret_member": {"workspaces": {"W1": MEMBER}, "projects": {"SECRET": MEMBER}},
    "not_joined": {"workspaces": {"W1": MEMBER}, "projects": {}},
    "removed": {"workspaces": {"W1": MEMBER}, "projects": {"PUB": MEMBER}, "project_change": {"deleted_at": "now"}},
    "deactivated": {"workspaces": {"W1": MEMBER}, "projects": {"PUB": MEMBER}, "project_change": {"is_active": False}},
    "ws_removed": {"workspaces": {"W1": MEMBER}, "projects": {"PUB": MEMBER}, "workspace_change": {"deleted_at": "now"}},
    "ws_deactivated": {"workspaces": {"W1": MEMBER}, "projects": {"PUB": MEMBER}, "workspace_change": {"is_active": False}},
    "guest": {"workspaces": {"W1": GUEST}, "projects": {"GUESTED": GUEST, "GUEST_ALL": GUEST}},
    "outsider": {"workspaces": {"W2": MEMBER}, "projects": {"W2P": MEMBER}},
}
SEARCHERS: tuple[str | None, ...] = (*USERS, None)
PROJECTS = {
    "PUB": ("W1", {"identifier": "PUB", "network": 2}),
    "SECRET": ("W1", {"identifier": "SEC", "network": 0}),
    "GUESTED": ("W1", {"identifier": "GST", "network": 2}),
    "GUEST_ALL": ("W1", {"identifier": "GSA", "network": 2, "guest_view_all_features": True}),
    "W2P": ("W2", {"identifier": "WTP", "network": 2}),
}


def build_world(plane: PlaneFactory) -> World:
    """The matrix's Plane content (see the module docstring); nothing indexed yet."""
    world = World(plane)
    for label in USERS:
        world.users[label] = plane.user(display_name=label)
    for label in ("W1", "W2"):
        world.workspaces[label] = plane.workspace(owner=world.users["admin" if label == "W1" else "outsider"], name=label)
    for label, (workspace, values) in PROJECTS.items():
        world.projects[label] = plane.project(world.workspaces[workspace], name=label, **values)
        if values.get("guest_view_all_features"):
            world.guest_all.add(label)
    for user, spec in USERS.items():
        for workspace, role in spec["workspaces"].items():
            world.ws_rows[(user, workspace)] = plane.workspace_member(world.workspaces[workspace], world.users[user], role)
        for project, role in spec["projects"].items():
            world.pm_rows[(user, project)] = plane.project_member(world.projects[project], world.users[user], role)
    for user, spec in USERS.items():
        for key, setter in (("project_change", world.set_project_member), ("workspace_change", world.set_workspace_member)):
            if key in spec:
                values = {name: utcnow() if value == "now" else value for name, value in spec[key].items()}
                for target in spec["projects"] if key == "project_change" else spec["workspaces"]:
                    setter(user, target, **values)

    def issue(project: str, creator: str, label: str) -> None:
        row = plane.issue(
            world.projects[project],
            f"{label} {WORD}",
            f"<p>{WORD} work item {label} in {project} by {creator}</p>",
            created_by_id=world.users[creator]["id"],
        )
        workspace = world.project_workspace(project)
        world.items.append(Item(label, f"issues:{row['id']}", "issues", workspace, (project,), None, creator))

    def page(workspace: str, owner: str, label: str, projects: tuple[str, ...] = (), private: bool = False) -> None:
        row = plane.page(
            world.workspaces[workspace],
            owner=world.users[owner],
            name=f"{label} {WORD}",
            description_html=f"<p>{WORD} page {label} owned by {owner}</p>",
            projects=tuple(world.projects[project] for project in projects),
            access=1 if private else 0,
        )
        item = Item(label, f"pages:{row['id']}", "pages", workspace, projects, owner if private else None, owner)
        world.items.append(item)

    for project in ("PUB", "SECRET", "GUESTED", "GUEST_ALL"):
        issue(project, "admin", f"{project} issue by admin")
        page("W1", "admin", f"{project} page by admin", (project,))
        page("W1", "admin", f"{project} private page of admin", (project,), private=True)
    for project in ("GUESTED", "GUEST_ALL"):
        issue(project, "guest", f"{project} issue by guest")
        page("W1", "guest", f"{project} page by guest", (project,))
        page("W1", "guest", f"{project} private page of guest", (project,), private=True)
    issue("PUB", "member", "PUB issue by member")
    issue("PUB", "removed", "PUB issue by the removed member")  # its creator is no member any more: hidden from them
    issue("PUB", "guest", "PUB issue by guest")  # created_by matches, but the guest is not in PUB
    page("W1", "member", "PUB private page of member", ("PUB",), private=True)
    page("W1", "admin", "page in PUB and SECRET", ("PUB", "SECRET"))
    page("W1", "guest", "page of guest in PUB and GUESTED", ("PUB", "GUESTED"))
    page("W1", "admin", "page in GUESTED and GUEST_ALL", ("GUESTED", "GUEST_ALL"))
    page("W1", "admin", "workspace page")
    page("W1", "member", "private workspace page of member", private=True)
    page("W1", "guest", "private workspace page of guest", private=True)
    issue("W2P", "outsider", "W2 issue")
    page("W2", "outsider", "W2 workspace page")
    page("W2", "outsider", "W2 project page", ("W2P",))
    world.items.append(Item("docs", "docs:acme/handbook:zephyr.md", "docs", None))
    return world


def index_world(world: World, sink: Sink) -> None:
    """Index the world through the real ``issues`` and ``pages`` sources, the indexer and *sink*, plus one global doc."""
    registry = runtime.get_registry()
    missing = {"issues", "pages"} - set(registry.sources)
    if missing:
        pytest.fail(f"the access matrix needs the Plane sources {sorted(missing)} installed (the issues and pages plugins)")
    documents: list[Document] = []
    for workspace in world.workspaces.values():
        for name in ("issues", "pages"):
            documents.extend(registry.sources[name].iter_documents(workspace["id"]))
    documents.append(
        Document(
            id="docs:acme/handbook:zephyr.md",
            source="docs",
            kind="docs",
            workspace_id=None,
            title=f"Handbook {WORD}",
            body=f"# {WORD}\n\nGlobal documentation every workspace may read.",
            body_format="markdown",
        )
    )
    expected = {item.document_id for item in world.items}
    assert {document.id for document in documents} == expected, "the sources did not yield exactly the scenario"
    stats = Indexer(sinks=[sink]).index(documents)
    assert stats.failed == {} and stats.documents_indexed == len(expected), stats


def mismatches(
    world: World,
    sink: Sink,
    *,
    modes: Iterable[str] = MODES,
    kind_filters: Iterable[tuple[str, ...] | None] = KIND_FILTERS,
    searchers: Iterable[str | None] = SEARCHERS,
    counter: list[int] | None = None,
) -> list[str]:
    """Every (workspace, user, mode, kinds) search whose result differs from the oracle, described; empty = all good.

    ``search()`` re-checks every hit and drops (with an ERROR) what a sink should not have returned. The sinks are
    under test here, so such a drop is a failure too, even though the final result would be right.
    """
    problems: list[str] = []
    dropped: list[str] = []
    handler = logger.add(lambda message: dropped.append(str(message).strip()), level="ERROR", filter="pi_framework.search")
    try:
        for workspace, user, mode, kinds in product(world.workspaces, searchers, modes, kind_filters):
            hits = search(
                WORD,
                world.workspaces[workspace]["id"],
                kinds=kinds,
                user_id=world.user_id(user),
                limit=LIMIT,
                mode=mode,
                sinks=[sink],
            )
            got = {hit.document_id for hit in hits}
            want = world.visible(user, workspace, kinds)
            if counter is not None:
                counter[0] += 1
                counter[1] += len(world.items)
            if got != want:
                leaked = sorted(world.label(document) for document in got - want)
                missed = sorted(world.label(document) for document in want - got)
                problems.append(f"{workspace} user={user} mode={mode} kinds={kinds}: leaked {leaked}, missed {missed}")
    finally:
        logger.remove(handler)
    return problems + [f"the sink's own filter let it through (search() dropped it): {line}" for line in dropped]


# ---------------------------------------------------------------------------------------------- the contract


class AccessContract:
    """What every sink must guarantee so that search returns only what Plane lets its user read."""

    dimension = 8
    supports_vector_search = True

    # ------------------------------------------------------------------ sink level (no Plane)
    @pytest.fixture
    def ready_sink(self, sink: Sink) -> Sink:
        sink.ensure_ready(self.dimension)
        return sink

    def chunk(self, document_id: str, workspace: str | None = "ws-1", **fields: Any) -> Chunk:
        vector = [0.0] * self.dimension
        vector[len(document_id) % self.dimension] = 1.0
        vector[0] += 0.5  # every chunk near the query vector, none identical
        values: dict[str, Any] = {
            "index": 0,
            "text": f"{WORD} {document_id}",
            "content_hash": "h",
            "source": document_id.split(":")[0],
            "kind": document_id.split(":")[0],
            "vector": vector,
        }
        values.update(fields)
        return Chunk(id=f"{document_id}#0", document_id=document_id, workspace_id=workspace, **values)

    def search_both(self, sink: Sink, **query: Any) -> dict[str, set[str]]:
        text = {hit.document_id for hit in sink.search_text(SearchQuery(text=WORD, limit=50, **query))}
        if not self.supports_vector_search:
            return {"text": text}
        vector = [1.0] + [0.0] * (self.dimension - 1)
        near = {hit.document_id for hit in sink.search_vector(SearchQuery(vector=vector, limit=50, **query))}
        return {"text": text, "vector": near}

    @pytest.fixture
    def scoped_sink(self, ready_sink: Sink) -> Sink:
        result = ready_sink.write(
            [
                self.chunk("issues:a1", project_ids=["pa"], metadata={"created_by": "u-admin"}),
                self.chunk("issues:a2", project_ids=["pa"], metadata={"created_by": "u-guest"}),
                self.chunk("issues:b1", project_ids=["pb"], metadata={"created_by": "u-guest"}),
                self.chunk("pages:ab", project_ids=["pa", "pb"], metadata={"created_by": "u-admin"}),
                self.chunk("pages:wiki", metadata={"created_by": "u-admin"}),
                self.chunk("pages:mine", owner_id="u-guest", project_ids=["pa"], metadata={"created_by": "u-guest"}),
                self.chunk("pages:other-ws", workspace="ws-2", project_ids=["pa"]),
                self.chunk("docs:guide", workspace=None),
            ]
        )
        assert not result.failed, result.failed
        return ready_sink

    def test_no_projects_means_no_project_content(self, scoped_sink: Sink) -> None:
        for found in self.search_both(scoped_sink, workspace_id="ws-1").values():
            assert found == {"pages:wiki", "docs:guide"}
        for found in self.search_both(scoped_sink, workspace_id="ws-1", user_id="u-guest").values():
            assert found == {"pages:wiki", "docs:guide"}

    def test_members_find_their_projects_only(self, scoped_sink: Sink) -> None:
        for found in self.search_both(scoped_sink, workspace_id="ws-1", user_id="u-x", projects=["pb"]).values():
            assert found == {"issues:b1", "pages:ab", "pages:wiki", "docs:guide"}
        for found in self.search_both(scoped_sink, workspace_id="ws-1", user_id="u-x", projects=["pa", "pb"]).values():
            assert found == {"issues:a1", "issues:a2", "issues:b1", "pages:ab", "pages:wiki", "docs:guide"}

    def test_guests_find_only_what_they_created(self, scoped_sink: Sink) -> None:
        query = {"workspace_id": "ws-1", "user_id": "u-guest", "projects": [], "guest_projects": ["pa"]}
        for found in self.search_both(scoped_sink, **query).values():
            assert found == {"issues:a2", "pages:mine", "pages:wiki", "docs:guide"}  # not issues:b1 (pb), not pages:ab
        for found in self.search_both(scoped_sink, **{**query, "user_id": "u-admin"}).values():
            assert found == {"issues:a1", "pages:ab", "pages:wiki", "docs:guide"}  # guest rule with another creator
        for found in self.search_both(scoped_sink, **{**query, "user_id": None}).values():
            assert found == {"pages:wiki", "docs:guide"}  # no user: the guest rule matches nobody

    def test_non_members_find_only_global_content(self, scoped_sink: Sink) -> None:
        query = {"workspace_id": "ws-1", "user_id": "u-guest", "projects": ["pa", "pb"], "workspace_member": False}
        for found in self.search_both(scoped_sink, **query).values():
            assert found == {"docs:guide"}

    def test_operators_may_drop_the_project_filter(self, scoped_sink: Sink) -> None:
        for found in self.search_both(scoped_sink, workspace_id="ws-1", projects=None).values():
            assert found == {"issues:a1", "issues:a2", "issues:b1", "pages:ab", "pages:wiki", "docs:guide"}

    @pytest.mark.parametrize("text", ["pa", "project_ids:pa", f"{WORD} OR project_ids:*", 'created_by:"u-guest"', "*:*"])
    def test_query_text_cannot_widen_the_filter(self, scoped_sink: Sink, text: str) -> None:
        query = SearchQuery("ws-1", text=f"{WORD} {text}", user_id="u-guest", projects=[], guest_projects=["pb"], limit=50)
        assert {hit.document_id for hit in scoped_sink.search_text(query)} <= {"issues:b1", "pages:wiki", "docs:guide"}

    def test_hits_carry_projects_and_owner(self, scoped_sink: Sink) -> None:
        query = SearchQuery("ws-1", text=WORD, user_id="u-guest", projects=["pa"], limit=50)
        hits = {hit.document_id: hit for hit in scoped_sink.search_text(query)}
        assert sorted(hits["pages:ab"].project_ids) == ["pa", "pb"] and hits["pages:ab"].owner_id is None
        assert hits["pages:mine"].owner_id == "u-guest" and hits["pages:mine"].metadata["created_by"] == "u-guest"
        assert all(query.allows(hit) for hit in hits.values())

    def test_a_filtered_page_is_full(self, ready_sink: Sink) -> None:
        """Many readable chunks behind many unreadable better matches: the limit is still filled (pre-filtering)."""
        hidden = [self.chunk(f"issues:h{n}", project_ids=["secret"], text=f"{WORD} {WORD} {WORD} h{n}") for n in range(60)]
        shown = [self.chunk(f"issues:s{n}", project_ids=["mine"], text=f"{WORD} s{n} filler words") for n in range(12)]
        assert not ready_sink.write(hidden + shown).failed
        query = {"workspace_id": "ws-1", "user_id": "u", "projects": ["mine"]}
        text = ready_sink.search_text(SearchQuery(text=WORD, limit=10, **query))
        assert len(text) == 10 and all(hit.document_id.startswith("issues:s") for hit in text)
        if self.supports_vector_search:
            vector = [1.0] + [0.0] * (self.dimension - 1)
            near = ready_sink.search_vector(SearchQuery(vector=vector, limit=10, **query))
            assert len(near) == 10 and all(hit.document_id.startswith("issues:s") for hit in near)

    # ------------------------------------------------------------------ the matrix (Plane, sources, indexer, search)
    @pytest.fixture
    def world(self, plane_db: PlaneFactory, pi_env: Any, sink: Sink) -> World:
        reset_plane_engine()
        pi_env(PLANE_DATABASE_URL=plane_db.url, PI_ACCESS_CACHE_TTL=0, PI_EMBEDDER="hashing")
        clear_access_cache()
        get_database().ensure_schema()
        world = build_world(plane_db)
        index_world(world, sink)
        return world

    def modes(self) -> tuple[str, ...]:
        return MODES if self.supports_vector_search else ("text",)

    def test_matrix_every_user_finds_exactly_what_plane_lets_them_read(self, world: World, sink: Sink) -> None:
        counter = [0, 0]
        problems = mismatches(world, sink, modes=self.modes(), counter=counter)
        assert not problems, f"{len(problems)} problems in {counter[0]} searches (Plane's rules):\n" + "\n".join(problems)
        assert counter[0] == len(world.workspaces) * len(SEARCHERS) * len(self.modes()) * len(KIND_FILTERS)

    def test_matrix_is_not_vacuous(self, world: World) -> None:
        """The oracle tells the cases apart (a trivially empty or full expectation would prove nothing)."""
        by_id = {item.document_id: item.label for item in world.items}

        def seen(user: str | None) -> set[str]:
            return {by_id[document] for document in world.visible(user, "W1")}

        assert "PUB issue by member" in seen("member") and "SECRET issue by admin" not in seen("member")
        assert "SECRET issue by admin" in seen("secret_member") and "PUB issue by admin" not in seen("secret_member")
        assert "page in PUB and SECRET" in seen("member") & seen("secret_member")
        assert seen("not_joined") == seen("removed") == seen("deactivated") == seen(None) == {"workspace page", "docs"}
        assert {"GUESTED issue by guest", "GUESTED private page of guest", "GUEST_ALL issue by admin"} <= seen("guest")
        assert not {"GUESTED issue by admin", "GUESTED page by admin", "PUB issue by guest"} & seen("guest")
        assert "private workspace page of member" in seen("member") and "PUB private page of admin" not in seen("member")
        assert seen("ws_removed") == seen("ws_deactivated") == seen("outsider") == {"docs"}
        assert len({frozenset(seen(user)) for user in SEARCHERS}) == 6

    def test_membership_changes_apply_on_the_next_query(self, world: World, sink: Sink) -> None:
        searchers = ("member", "not_joined", "guest", "secret_member", "removed", "ws_removed")
        changes = [
            ("not_joined joins PUB", lambda: world.join("not_joined", "PUB")),
            ("member leaves PUB", lambda: world.leave("member", "PUB")),
            ("removed is added back to PUB", lambda: world.join("removed", "PUB")),
            ("guest may see all of GUESTED", lambda: world.set_guest_view_all("GUESTED", True)),
            ("GUEST_ALL stops showing guests everything", lambda: world.set_guest_view_all("GUEST_ALL", False)),
            ("guest becomes a member of GUEST_ALL", lambda: world.set_project_member("guest", "GUEST_ALL", role=MEMBER)),
            ("ws_removed is back in W1", lambda: world.set_workspace_member("ws_removed", "W1", deleted_at=None)),
            ("not_joined leaves the workspace", lambda: world.set_workspace_member("not_joined", "W1", is_active=False)),
            ("SECRET is archived", lambda: world.archive_project("SECRET")),
        ]
        for description, change in changes:
            before = {user: world.visible(user, "W1") for user in searchers}
            change()
            after = {user: world.visible(user, "W1") for user in searchers}
            assert before != after, f"{description}: the scenario should change what someone sees"
            problems = mismatches(world, sink, modes=self.modes(), kind_filters=(None,), searchers=searchers)
            assert not problems, f"after '{description}':\n" + "\n".join(problems)

    def test_all_projects_is_every_project_and_still_private(self, world: World, sink: Sink) -> None:
        hits = search(WORD, world.workspaces["W1"]["id"], limit=LIMIT, mode="text", sinks=[sink], all_projects=True)
        public = {item.document_id for item in world.items if item.workspace in ("W1", None) and item.private_owner is None}
        assert {hit.document_id for hit in hits} == public
