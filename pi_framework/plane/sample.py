"""Plane rows for the demo, benchmarks and tests: the real schema plus factories that write valid rows.

* :func:`load_schema` creates Plane's tables: the reference DDL (``pi_framework/plane/plane_schema.sql``) on
  PostgreSQL, the equivalent SQLAlchemy Core tables elsewhere.
* :class:`PlaneFactory` inserts users, workspaces, workspace and project members, projects, states, issues, labels,
  issue labels and assignees, pages, project pages and workspace licenses. Django sets no server defaults, so every NOT NULL column is filled with
  Django's model default unless the caller overrides it; every method returns the row as a dict.
* :func:`create_sqlite_plane` is a Plane-shaped SQLite database (how ``pi demo`` runs without services);
  :func:`sample_issue` is plausible work-item text.

This is product code (``pi demo`` uses it), so it never imports pytest; the ``plane_db`` fixture built on it
lives in :mod:`pi_framework.testing.plane`.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, Table, delete, func, select, update

from pi_framework.db import make_engine
from pi_framework.plane import schema

_TAGS = re.compile(r"<[^>]+>")
_counter = itertools.count(1)


def utcnow() -> datetime:
    return datetime.now(UTC)


def strip_tags(html: str) -> str | None:
    """What Plane's ``Issue.save()`` stores in ``description_stripped`` (NULL when the HTML is empty)."""
    if html == "":
        return None
    return _TAGS.sub("", html).strip()


def load_schema(engine: Engine, extra: Iterable[Path | str | MetaData | Table] = ()) -> None:
    """Create Plane's tables: the real DDL on PostgreSQL, the equivalent Core tables elsewhere.

    *extra* adds Plane tables the core does not declare (a plugin's): reference DDL (a ``.sql`` path, or its text)
    runs on PostgreSQL only; Core tables (a ``Table``, or a whole ``MetaData``) are created on any database.
    """
    postgresql = engine.dialect.name == "postgresql"
    if postgresql:
        with engine.begin() as connection:
            connection.exec_driver_sql(schema.SCHEMA_SQL.read_text())
    else:
        schema.metadata.create_all(engine)
    for tables in extra:
        if isinstance(tables, Table):
            tables.create(engine, checkfirst=True)
        elif isinstance(tables, MetaData):
            tables.create_all(engine)
        elif not postgresql:
            raise ValueError(f"reference DDL runs on PostgreSQL only; give {engine.dialect.name} the tables' MetaData")
        else:
            with engine.begin() as connection:
                connection.exec_driver_sql(tables.read_text() if isinstance(tables, Path) else tables)


class PlaneFactory:
    """Writes Plane rows with every NOT NULL column set (Django's defaults unless overridden)."""

    def __init__(self, engine: Engine, url: str | None = None) -> None:
        self.engine = engine
        self.url = url or engine.url.render_as_string(hide_password=False)

    # ------------------------------------------------------------------ plumbing
    def insert(self, table: Table, values: dict[str, Any]) -> dict[str, Any]:
        with self.engine.begin() as connection:
            connection.execute(table.insert().values(**values))
        return values

    def update(self, table: Table, row_id: str, *, touch: bool = True, **values: Any) -> dict[str, Any]:
        """Update a row like Django's ``save()``: ``updated_at`` moves to now unless given or ``touch=False``."""
        if touch:
            values.setdefault("updated_at", utcnow())
        with self.engine.begin() as connection:
            connection.execute(update(table).where(table.c.id == row_id).values(**values))
        return values

    def soft_delete(self, table: Table, row_id: str, when: datetime | None = None) -> None:
        when = when or utcnow()
        self.update(table, row_id, deleted_at=when, updated_at=when)

    def hard_delete(self, table: Table, row_id: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(table).where(table.c.id == row_id))

    def _audit(self, overrides: dict[str, Any]) -> dict[str, Any]:
        now = overrides.pop("now", None) or utcnow()
        return {
            "id": str(uuid.uuid4()),
            "created_at": now,
            "updated_at": now,
            "deleted_at": None,
            "created_by_id": None,
            "updated_by_id": None,
        }

    # ------------------------------------------------------------------ factories
    def user(self, **overrides: Any) -> dict[str, Any]:
        n = next(_counter)
        now = overrides.pop("now", None) or utcnow()
        row = {
            "id": str(uuid.uuid4()),
            "username": f"user{n}-{uuid.uuid4().hex[:6]}",
            "email": None,
            "display_name": f"user{n}",
            "first_name": "",
            "last_name": "",
            "is_active": True,
            "is_bot": False,
            "date_joined": now,
            "created_at": now,
            "updated_at": now,
        }
        return self.insert(schema.users, {**row, **overrides})

    def workspace(self, owner: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
        owner = owner or self.user()
        n = next(_counter)
        row = {
            **self._audit(overrides),
            "name": f"Workspace {n}",
            "slug": f"ws-{n}-{uuid.uuid4().hex[:8]}",
            "owner_id": owner["id"],
            "organization_size": None,
            "timezone": "UTC",
            "background_color": "#3f76ff",
        }
        return self.insert(schema.workspaces, {**row, **overrides})

    def workspace_member(
        self, workspace: dict[str, Any], user: dict[str, Any], role: int = 15, **overrides: Any
    ) -> dict[str, Any]:
        """A ``workspace_members`` row: *user* is an active member (Plane's roles: 20 admin, 15 member, 5 guest)."""
        row = {
            **self._audit(overrides),
            "workspace_id": workspace["id"],
            "member_id": user["id"],
            "role": role,
            "is_active": True,
        }
        return self.insert(schema.workspace_members, {**row, **overrides})

    def project_member(self, project: dict[str, Any], user: dict[str, Any], role: int = 15, **overrides: Any) -> dict[str, Any]:
        """A ``project_members`` row: *user* reads the project's content (role 5, a guest, only what they created)."""
        row = {
            **self._audit(overrides),
            "workspace_id": project["workspace_id"],
            "project_id": project["id"],
            "member_id": user["id"],
            "role": role,
            "is_active": True,
        }
        return self.insert(schema.project_members, {**row, **overrides})

    def project(self, workspace: dict[str, Any], **overrides: Any) -> dict[str, Any]:
        n = next(_counter)
        row = {
            **self._audit(overrides),
            "workspace_id": workspace["id"],
            "name": f"Project {n}",
            "identifier": f"P{n}",
            "description": "",
            "description_text": None,
            "description_html": None,
            "network": 2,
            "page_view": True,
            "archived_at": None,
            "timezone": "UTC",
            "external_source": None,
            "external_id": None,
        }
        return self.insert(schema.projects, {**row, **overrides})

    def state(self, project: dict[str, Any], group: str = "started", **overrides: Any) -> dict[str, Any]:
        name = overrides.pop("name", None) or f"{group.title()} {next(_counter)}"
        row = {
            **self._audit(overrides),
            "workspace_id": project["workspace_id"],
            "project_id": project["id"],
            "name": name,
            "description": "",
            "color": "#60646C",
            "slug": name.lower().replace(" ", "-"),
            "sequence": 65535.0,
            "group": group,
            "default": False,
            "is_triage": group == "triage",
            "external_source": None,
            "external_id": None,
        }
        return self.insert(schema.states, {**row, **overrides})

    def next_sequence_id(self, project_id: str) -> int:
        with self.engine.connect() as connection:
            current = connection.execute(
                select(func.max(schema.issues.c.sequence_id)).where(schema.issues.c.project_id == project_id)
            )
            return (current.scalar() or 0) + 1

    def issue(
        self,
        project: dict[str, Any],
        name: str = "An issue",
        description_html: str = "<p></p>",
        state: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        if "sequence_id" not in overrides:
            overrides["sequence_id"] = self.next_sequence_id(project["id"])
        return self.insert(schema.issues, self.issue_values(project, name, description_html, state, **overrides))

    def insert_many(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """One multi-row insert (bulk data for benchmarks: build the rows with ``issue_values``)."""
        with self.engine.begin() as connection:
            connection.execute(table.insert(), rows)

    def issue_values(
        self,
        project: dict[str, Any],
        name: str,
        description_html: str,
        state: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        """An issue row (``sequence_id`` must be among *overrides*), not inserted."""
        row = {
            **self._audit(overrides),
            "workspace_id": project["workspace_id"],
            "project_id": project["id"],
            "parent_id": None,
            "state_id": state["id"] if state else None,
            "estimate_point_id": None,
            "type_id": None,
            "name": name,
            "description_json": {},
            "description_html": description_html,
            "description_stripped": strip_tags(description_html),
            "description_binary": None,
            "priority": "none",
            "point": None,
            "start_date": None,
            "target_date": None,
            "sort_order": 65535.0,
            "completed_at": None,
            "archived_at": None,
            "is_draft": False,
            "external_source": None,
            "external_id": None,
        }
        return {**row, **overrides}

    def label(self, project: dict[str, Any] | None, name: str | None = None, **overrides: Any) -> dict[str, Any]:
        """A ``labels`` row of *project* (``None`` with ``workspace_id=...`` among *overrides*: a workspace label)."""
        workspace_id = overrides.pop("workspace_id", None) or (project or {}).get("workspace_id")
        row = {
            **self._audit(overrides),
            "workspace_id": workspace_id,
            "project_id": project["id"] if project else None,
            "parent_id": None,
            "name": name or f"label-{next(_counter)}",
            "description": "",
            "color": "#60646C",
            "sort_order": 65535.0,
            "external_source": None,
            "external_id": None,
        }
        return self.insert(schema.labels, {**row, **overrides})

    def issue_label(self, issue: dict[str, Any], label: dict[str, Any], **overrides: Any) -> dict[str, Any]:
        """An ``issue_labels`` row: *issue* carries *label* (soft-delete it to take the label off)."""
        row = {
            **self._audit(overrides),
            "workspace_id": issue["workspace_id"],
            "project_id": issue["project_id"],
            "issue_id": issue["id"],
            "label_id": label["id"],
        }
        return self.insert(schema.issue_labels, {**row, **overrides})

    def issue_assignee(self, issue: dict[str, Any], user: dict[str, Any], **overrides: Any) -> dict[str, Any]:
        """An ``issue_assignees`` row: *user* is assigned *issue* (soft-delete it to unassign)."""
        row = {
            **self._audit(overrides),
            "workspace_id": issue["workspace_id"],
            "project_id": issue["project_id"],
            "issue_id": issue["id"],
            "assignee_id": user["id"],
        }
        return self.insert(schema.issue_assignees, {**row, **overrides})

    def page(
        self,
        workspace: dict[str, Any],
        owner: dict[str, Any] | None = None,
        name: str = "A page",
        description_html: str = "<p></p>",
        projects: tuple[dict[str, Any], ...] = (),
        **overrides: Any,
    ) -> dict[str, Any]:
        owner_id = owner["id"] if owner else workspace["owner_id"]
        row = {
            **self._audit(overrides),
            "workspace_id": workspace["id"],
            "owned_by_id": owner_id,
            "parent_id": None,
            "name": name,
            "description_json": {},
            "description_html": description_html,
            "description_stripped": strip_tags(description_html),
            "description_binary": None,
            "access": 0,
            "color": "",
            "archived_at": None,
            "is_locked": False,
            "is_global": not projects,
            "view_props": {"full_width": False},
            "logo_props": {},
            "moved_to_page": None,
            "moved_to_project": None,
            "sort_order": 65535.0,
            "external_source": None,
            "external_id": None,
        }
        page = self.insert(schema.pages, {**row, **overrides})
        for project in projects:
            self.project_page(project, page, now=page["created_at"])
        return page

    def project_page(self, project: dict[str, Any], page: dict[str, Any], **overrides: Any) -> dict[str, Any]:
        row = {
            **self._audit(overrides),
            "workspace_id": project["workspace_id"],
            "project_id": project["id"],
            "page_id": page["id"],
        }
        return self.insert(schema.project_pages, {**row, **overrides})

    def workspace_license(self, workspace: dict[str, Any], plan: str = "PRO", **overrides: Any) -> dict[str, Any]:
        row = {
            **self._audit(overrides),
            "workspace_id": workspace["id"],
            "plan": plan,
            "recurring_interval": None,
            "current_period_start_date": None,
            "current_period_end_date": None,
            "purchased_seats": 0,
            "free_seats": 12,
            "is_cancelled": False,
            "is_offline_payment": False,
            "last_synced_at": utcnow(),
            "trial_end_date": None,
            "has_activated_free_trial": False,
            "has_added_payment_method": False,
            "subscription": None,
            "last_payment_failed_date": None,
            "last_payment_failed_count": 0,
            "last_verified_at": None,
        }
        return self.insert(schema.workspace_licenses, {**row, **overrides})

    # ------------------------------------------------------------------ common edits
    def archive(self, table: Table, row_id: str, when: date | datetime | None = None) -> None:
        """Archive an issue/page (``archived_at`` is a DATE there) or a project (a timestamp)."""
        when = when or (utcnow() if table is schema.projects else utcnow().date())
        self.update(table, row_id, archived_at=when)


def create_sqlite_plane(path: str, tables: Iterable[Table] = ()) -> PlaneFactory:
    """A Plane-shaped SQLite database at *path* (for the demo and quick experiments): Plane's tables, and *tables*
    (those of every installed Plane source: :func:`pi_framework.runtime.plane_tables`)."""
    engine = make_engine(f"sqlite:///{path}")
    load_schema(engine, list(tables))
    return PlaneFactory(engine)


# ---------------------------------------------------------------------- realistic sample content
_AREAS = [
    "checkout",
    "login",
    "invoice export",
    "search bar",
    "notifications",
    "file upload",
    "calendar sync",
    "dark mode",
    "API rate limits",
    "webhooks",
    "onboarding tour",
    "billing page",
    "SSO with Okta",
    "mobile app",
]
_PROBLEMS = [
    "crashes on Safari",
    "is slow for large workspaces",
    "shows the wrong currency",
    "times out after 30 s",
    "loses unsaved changes",
    "ignores the user's timezone",
    "sends duplicate emails",
    "breaks with emoji input",
    "returns HTTP 500 intermittently",
    "does not respect permissions",
]
_DETAILS = [
    "Steps to reproduce: open the page, click <b>Save</b>, wait a few seconds.",
    "Customers on the enterprise plan reported this twice this week.",
    "The logs show a <code>NullPointerException</code> in the worker.",
    "Expected: the action completes. Actual: a spinner forever.",
    "Related to the migration we shipped in the last cycle.",
    "Proposed fix: cache the result and invalidate it on update.",
    "Needs a regression test before we close it.",
    "Design mock-ups are attached in Figma.",
]


def sample_issue(n: int) -> tuple[str, str]:
    """A plausible work item (name, description_html), deterministic in *n*."""
    area, problem = _AREAS[n % len(_AREAS)], _PROBLEMS[(n // len(_AREAS)) % len(_PROBLEMS)]
    details = [_DETAILS[(n + k) % len(_DETAILS)] for k in range(1 + n % 3)]
    html = "".join(f"<p>{line}</p>" for line in [f"The {area} {problem}.", *details])
    return f"{area.capitalize()} {problem} (#{n})", html
