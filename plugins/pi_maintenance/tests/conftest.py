"""Fixtures of pi_maintenance's tests: a PI database on a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from pi_framework.db import Database, get_database
from pi_framework.db.models import JobStatus, WorkspaceVectorization, utcnow


@pytest.fixture
def pg_database(pi_env, postgres_url) -> Database:
    pi_env(PI_DATABASE_URL=postgres_url)
    database = get_database()
    database.ensure_schema()
    return database


@pytest.fixture
def add_job(pg_database) -> Callable[..., int]:
    """``add_job(workspace_id, status, created=…, started=…, heartbeat=…, **columns)`` with times as ages (timedelta)."""

    def add(
        workspace_id: str,
        status: str = JobStatus.RUNNING,
        created: timedelta = timedelta(0),
        started: timedelta | None = None,
        heartbeat: timedelta | None = None,
        **columns: object,
    ) -> int:
        now = utcnow()

        def ago(age: timedelta | None) -> datetime | None:
            return None if age is None else now - age

        with pg_database.session() as session:
            job = WorkspaceVectorization(
                workspace_id=workspace_id,
                status=status,
                created_at=ago(created),
                started_at=ago(started),
                heartbeat_at=ago(heartbeat),
                **columns,
            )
            session.add(job)
            session.flush()
            return job.id

    return add
