"""Plane's work-item comments table, declared by this plugin (the core's Plane schema does not know it).

``SCHEMA_SQL`` is the reference DDL as Plane's migrations create it (PostgreSQL; the tests load it). The Core table
below declares every column of it with the column types of :data:`pi_framework.api.plane_schema`, so the same object
serves the source's queries, the tests' rows and a SQLite sample database (``pi demo``). Foreign keys are left to the
DDL: the table lives on a ``MetaData`` of its own, without Plane's ``users``, ``projects`` or ``issues``.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import JSON, Column, MetaData, String, Table, Text
from sqlalchemy.dialects.postgresql import ARRAY

from pi_framework.api import plane_schema

SCHEMA_SQL = Path(__file__).with_name("comments_schema.sql")

UUID, UTCDateTime, JSONDOC = plane_schema.UUID, plane_schema.UTCDateTime, plane_schema.JSONDOC
#: ``varchar(200)[]`` on PostgreSQL, a JSON list elsewhere (SQLite has no arrays)
URL_LIST = JSON().with_variant(ARRAY(String(200)), "postgresql")

metadata = MetaData()

issue_comments = Table(
    "issue_comments",
    metadata,
    # ProjectBaseModel: BaseModel (uuid, audit, soft delete) + workspace + project
    Column("id", UUID, primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("deleted_at", UTCDateTime),
    Column("created_by_id", UUID),
    Column("updated_by_id", UUID),
    Column("workspace_id", UUID, nullable=False, index=True),
    Column("project_id", UUID, nullable=False, index=True),
    # IssueComment
    Column("issue_id", UUID, nullable=False, index=True),
    Column("actor_id", UUID),
    Column("parent_id", UUID),
    Column("description_id", UUID),
    Column("comment_stripped", Text, nullable=False),
    Column("comment_json", JSONDOC, nullable=False),
    Column("comment_html", Text, nullable=False),
    Column("attachments", URL_LIST, nullable=False),
    Column("access", String(100), nullable=False),
    Column("external_source", String(255)),
    Column("external_id", String(255)),
    Column("edited_at", UTCDateTime),
)
