"""Plane's cycle tables, declared by this plugin (the core's schema does not know them).

``SCHEMA_SQL`` is the reference DDL as Plane's migrations create it (PostgreSQL; the tests load it). The Core
tables below declare every column of it with the column types of :data:`pi_framework.api.plane_schema`, so the
same objects serve the source's queries, the tests' rows and a SQLite sample database. Foreign keys are left
to the DDL: these tables live on a ``MetaData`` of their own, without Plane's ``users`` or ``projects``.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text

from pi_framework.api import plane_schema

SCHEMA_SQL = Path(__file__).with_name("cycles_schema.sql")

UUID, UTCDateTime, JSONDOC = plane_schema.UUID, plane_schema.UTCDateTime, plane_schema.JSONDOC

metadata = MetaData()


def _project_base() -> list[Column]:
    """Columns of Plane's ProjectBaseModel: BaseModel (uuid, audit, soft delete) + workspace + project."""
    return [
        Column("id", UUID, primary_key=True),
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
        Column("deleted_at", UTCDateTime),
        Column("created_by_id", UUID),
        Column("updated_by_id", UUID),
        Column("workspace_id", UUID, nullable=False, index=True),
        Column("project_id", UUID, nullable=False, index=True),
    ]


cycles = Table(
    "cycles",
    metadata,
    *_project_base(),
    Column("name", String(255), nullable=False),
    Column("description", Text, nullable=False),
    Column("start_date", UTCDateTime),
    Column("end_date", UTCDateTime),
    Column("owned_by_id", UUID, nullable=False),
    Column("view_props", JSONDOC, nullable=False),
    Column("sort_order", Float, nullable=False),
    Column("external_source", String(255)),
    Column("external_id", String(255)),
    Column("progress_snapshot", JSONDOC, nullable=False),
    Column("archived_at", UTCDateTime),
    Column("logo_props", JSONDOC, nullable=False),
    Column("manual_status", String(20)),
    Column("started_at", UTCDateTime),
    Column("completed_at", UTCDateTime),
    Column("timezone", String(255), nullable=False),
    Column("version", Integer, nullable=False),
)

cycle_issues = Table(
    "cycle_issues",
    metadata,
    *_project_base(),
    Column("issue_id", UUID, nullable=False, index=True),
    Column("cycle_id", UUID, nullable=False, index=True),
)
