"""Queries over vectorization jobs shared by the reaper, the ``jobs`` health check and ``pi status``."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from pi_framework.api import WorkspaceVectorization

#: when a job last showed a sign of life: its heartbeat, else its start, else its creation
last_progress: ColumnElement[datetime] = func.coalesce(
    WorkspaceVectorization.progress_at, WorkspaceVectorization.started_at, WorkspaceVectorization.created_at
)


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time the framework stores is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def iso(moment: datetime | None) -> str | None:
    moment = as_utc(moment)
    return moment.isoformat() if moment else None


def counts_by_status(session: Session) -> dict[str, int]:
    rows = session.query(WorkspaceVectorization.status, func.count()).group_by(WorkspaceVectorization.status)
    return {status: count for status, count in rows}
