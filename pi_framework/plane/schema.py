"""Plane's tables (the subset in ``plane_schema.sql``) as SQLAlchemy Core, portable to SQLite.

Every column of the reference schema is declared, so the same objects serve the sources' queries,
the test factories (Django sets no server defaults: every NOT NULL column is written explicitly) and
the demo, which creates these tables in SQLite. ``tests`` check the columns against the real DDL.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
    Uuid,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB

#: the reference DDL, as Plane's migrations create it (PostgreSQL only)
SCHEMA_SQL = Path(__file__).with_name("plane_schema.sql")

UUID = Uuid(as_uuid=False).with_variant(String(36), "sqlite")
JSONDOC = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator):
    """``timestamptz`` that always reads and writes aware UTC datetimes (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | str | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class PlainDate(TypeDecorator):
    """``date`` columns (``archived_at`` of issues and pages)."""

    impl = Date
    cache_ok = True

    def process_result_value(self, value: date | str | None, dialect: Any) -> date | None:
        return date.fromisoformat(value) if isinstance(value, str) else value


metadata = MetaData()


def _user_fk() -> ForeignKey:
    return ForeignKey("users.id", deferrable=True, initially="DEFERRED")


def _fk(target: str) -> ForeignKey:
    return ForeignKey(target, deferrable=True, initially="DEFERRED")


def _audit(*, soft_delete: bool = True) -> list[Column]:
    """Columns of Plane's BaseModel (TimeAuditModel + UserAuditModel + SoftDeleteModel)."""
    columns = [
        Column("id", UUID, primary_key=True),
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
    ]
    if soft_delete:
        columns.append(Column("deleted_at", UTCDateTime))
    columns += [Column("created_by_id", UUID, _user_fk()), Column("updated_by_id", UUID, _user_fk())]
    return columns


def _external() -> list[Column]:
    return [Column("external_source", String(255)), Column("external_id", String(255))]


users = Table(
    "users",
    metadata,
    Column("id", UUID, primary_key=True),
    Column("username", String(128), nullable=False, unique=True),
    Column("email", String(255), unique=True),
    Column("display_name", String(255), nullable=False),
    Column("first_name", String(255), nullable=False),
    Column("last_name", String(255), nullable=False),
    Column("is_active", Boolean, nullable=False),
    Column("is_bot", Boolean, nullable=False),
    Column("date_joined", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

workspaces = Table(
    "workspaces",
    metadata,
    *_audit(),
    Column("name", String(80), nullable=False),
    Column("slug", String(48), nullable=False, unique=True),
    Column("owner_id", UUID, _user_fk(), nullable=False),
    Column("organization_size", String(20)),
    Column("timezone", String(255), nullable=False),
    Column("background_color", String(255), nullable=False),
)

workspace_members = Table(
    "workspace_members",
    metadata,
    *_audit(),
    Column("workspace_id", UUID, _fk("workspaces.id"), nullable=False),
    Column("member_id", UUID, _user_fk(), nullable=False),
    Column("role", SmallInteger, nullable=False),
    Column("is_active", Boolean, nullable=False),
)

projects = Table(
    "projects",
    metadata,
    *_audit(),
    Column("workspace_id", UUID, _fk("workspaces.id"), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("identifier", String(12), nullable=False),
    Column("description", Text, nullable=False),
    Column("description_text", JSONDOC),
    Column("description_html", JSONDOC),
    Column("network", SmallInteger, nullable=False),
    Column("page_view", Boolean, nullable=False),
    Column("archived_at", UTCDateTime),
    Column("guest_view_all_features", Boolean, nullable=False, default=False, server_default=false()),
    Column("timezone", String(255), nullable=False),
    *_external(),
)

project_members = Table(
    "project_members",
    metadata,
    *_audit(),
    Column("workspace_id", UUID, _fk("workspaces.id"), nullable=False),
    Column("project_id", UUID, _fk("projects.id"), nullable=False),
    Column("member_id", UUID, _user_fk()),
    Column("role", SmallInteger, nullable=False),
    Column("is_active", Boolean, nullable=False),
)

states = Table(
    "states",
    metadata,
    *_audit(),
    Column("workspace_id", UUID, _fk("workspaces.id"), nullable=False),
    Column("project_id", UUID, _fk("projects.id"), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("description", Text, nullable=False),
    Column("color", String(255), nullable=False),
    Column("slug", String(100), nullable=False),
    Column("sequence", Float, nullable=False),
    Column("group", String(20), nullable=False),
    Column("default", Boolean, nullable=False),
    Column("is_triage", Boolean, nullable=False),
    *_external(),
)

issues = Table(
    "issues",
    metadata,
    *_audit(),
    Column("workspace_id", UUID, _fk("workspaces.id"), nullable=False, index=True),
    Column("project_id", UUID, _fk("projects.id"), nullable=False, index=True),
    Column("parent_id", UUID, _fk("issues.id"), index=True),
    Column("state_id", UUID, _fk("states.id"), index=True),
    Column("estimate_point_id", UUID),
    Column("type_id", UUID),
    Column("name", String(255), nullable=False),
    Column("description_json", JSONDOC, nullable=False),
    Column("description_html", Text, nullable=False),
    Column("description_stripped", Text),
    Column("description_binary", LargeBinary),
    Column("priority", String(30), nullable=False),
    Column("point", Integer),
    Column("start_date", PlainDate),
    Column("target_date", PlainDate),
    Column("sequence_id", Integer, nullable=False),
    Column("sort_order", Float, nullable=False),
    Column("completed_at", UTCDateTime),
    Column("archived_at", PlainDate),
    Column("is_draft", Boolean, nullable=False),
    *_external(),
)

labels = Table(
    "labels",
    metadata,
    *_audit(),
    Column("workspace_id", UUID, _fk("workspaces.id"), nullable=False, index=True),
    Column("project_id", UUID, _fk("projects.id"), index=True),  # NULL: a workspace label
    Column("parent_id", UUID, _fk("labels.id")),
    Column("name", String(255), nullable=False),
    Column("description", Text, nullable=False),
    Column("color", String(255), nullable=False),
    Column("sort_order", Float, nullable=False),
    *_external(),
)

issue_labels = Table(
    "issue_labels",
    metadata,
    *_audit(),
    Column("workspace_id", UUID, _fk("workspaces.id"), nullable=False, index=True),
    Column("project_id", UUID, _fk("projects.id"), nullable=False),
    Column("issue_id", UUID, _fk("issues.id"), nullable=False, index=True),
    Column("label_id", UUID, _fk("labels.id"), nullable=False, index=True),
)

issue_assignees = Table(
    "issue_assignees",
    metadata,
    *_audit(),
    Column("workspace_id", UUID, _fk("workspaces.id"), nullable=False, index=True),
    Column("project_id", UUID, _fk("projects.id"), nullable=False),
    Column("issue_id", UUID, _fk("issues.id"), nullable=False, index=True),
    Column("assignee_id", UUID, _user_fk(), nullable=False, index=True),
)

pages = Table(
    "pages",
    metadata,
    *_audit(),
    Column("workspace_id", UUID, _fk("workspaces.id"), nullable=False, index=True),
    Column("owned_by_id", UUID, _user_fk(), nullable=False),
    Column("parent_id", UUID, _fk("pages.id")),
    Column("name", Text, nullable=False),
    Column("description_json", JSONDOC, nullable=False),
    Column("description_html", Text, nullable=False),
    Column("description_stripped", Text),
    Column("description_binary", LargeBinary),
    Column("access", SmallInteger, nullable=False),
    Column("color", String(255), nullable=False),
    Column("archived_at", PlainDate),
    Column("is_locked", Boolean, nullable=False),
    Column("is_global", Boolean, nullable=False),
    Column("view_props", JSONDOC, nullable=False),
    Column("logo_props", JSONDOC, nullable=False),
    Column("moved_to_page", UUID),
    Column("moved_to_project", UUID),
    Column("sort_order", Float, nullable=False),
    *_external(),
)

project_pages = Table(
    "project_pages",
    metadata,
    *_audit(),
    Column("workspace_id", UUID, _fk("workspaces.id"), nullable=False),
    Column("project_id", UUID, _fk("projects.id"), nullable=False),
    Column("page_id", UUID, _fk("pages.id"), nullable=False, index=True),
)

workspace_licenses = Table(
    "workspace_licenses",
    metadata,
    *_audit(),
    Column("workspace_id", UUID, _fk("workspaces.id"), nullable=False, unique=True),
    Column("plan", String(255), nullable=False),
    Column("recurring_interval", String(255)),
    Column("current_period_start_date", UTCDateTime),
    Column("current_period_end_date", UTCDateTime),
    Column("purchased_seats", Integer, nullable=False),
    Column("free_seats", Integer, nullable=False),
    Column("is_cancelled", Boolean, nullable=False),
    Column("is_offline_payment", Boolean, nullable=False),
    Column("last_synced_at", UTCDateTime, nullable=False),
    Column("trial_end_date", UTCDateTime),
    Column("has_activated_free_trial", Boolean, nullable=False),
    Column("has_added_payment_method", Boolean, nullable=False),
    Column("subscription", String(255)),
    Column("last_payment_failed_date", UTCDateTime),
    Column("last_payment_failed_count", Integer, nullable=False),
    Column("last_verified_at", UTCDateTime),
)
