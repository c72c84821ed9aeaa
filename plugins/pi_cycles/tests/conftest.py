"""Plane rows for pi_cycles' tests: the plugin's own reference DDL loaded into ``plane_db``, and cycle factories."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pi_cycles.schema import SCHEMA_SQL, cycle_issues, cycles
from pi_cycles.source import CyclesSource


@pytest.fixture
def plane_extra_schema(plane_extra_schema):
    """``plane_db`` creates Plane's cycle tables from the plugin's reference DDL (the core's schema has none), and keeps
    the tables the other installed Plane sources declare (a vectorization runs every installed source)."""
    own = {cycles.name, cycle_issues.name}
    return [SCHEMA_SQL, *(tables for tables in plane_extra_schema if getattr(tables, "name", None) not in own)]


@pytest.fixture
def source(plane_settings) -> CyclesSource:
    return CyclesSource(plane_settings)


class Cycles:
    """Writes ``cycles`` and ``cycle_issues`` rows with every NOT NULL column set (Django's model defaults)."""

    def __init__(self, plane_db) -> None:
        self.plane = plane_db

    def cycle(self, project: dict[str, Any], name: str = "Sprint", **overrides: Any) -> dict[str, Any]:
        now = datetime.now(UTC)
        row = {
            "id": str(uuid.uuid4()),
            "created_at": now,
            "updated_at": now,
            "deleted_at": None,
            "created_by_id": None,
            "updated_by_id": None,
            "workspace_id": project["workspace_id"],
            "project_id": project["id"],
            "name": name,
            "description": "",
            "start_date": None,
            "end_date": None,
            "owned_by_id": overrides.get("created_by_id") or self.plane.user()["id"],
            "view_props": {},
            "sort_order": 65535.0,
            "external_source": None,
            "external_id": None,
            "progress_snapshot": {},
            "archived_at": None,
            "logo_props": {},
            "manual_status": None,
            "started_at": None,
            "completed_at": None,
            "timezone": "UTC",
            "version": 1,
        }
        return self.plane.insert(cycles, {**row, **overrides})

    def add(self, cycle: dict[str, Any], issue: dict[str, Any], **overrides: Any) -> dict[str, Any]:
        now = datetime.now(UTC)
        row = {
            "id": str(uuid.uuid4()),
            "created_at": now,
            "updated_at": now,
            "deleted_at": None,
            "created_by_id": None,
            "updated_by_id": None,
            "workspace_id": cycle["workspace_id"],
            "project_id": cycle["project_id"],
            "issue_id": issue["id"],
            "cycle_id": cycle["id"],
        }
        return self.plane.insert(cycle_issues, {**row, **overrides})


@pytest.fixture
def plane_cycles(plane_db) -> Cycles:
    return Cycles(plane_db)
