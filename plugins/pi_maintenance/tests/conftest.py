"""Fixtures of pi_maintenance's tests: the PI database (PostgreSQL and SQLite) and jobs in it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from pi_framework.db import Database, get_database
from pi_framework.db.models import JobStatus, WorkspaceVectorization, utcnow


@pytest.fixture(params=["postgresql", "sqlite"])
def pi_db(request, pi_env) -> Database:
    """The PI database on PostgreSQL (production) and on SQLite (the one-machine default)."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    pi_env(PI_DATABASE_URL=url)
    database = get_database()
    database.ensure_schema()
    return database


@pytest.fixture
def add_job(pi_db) -> Callable[..., int]:
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

        with pi_db.session() as session:
            job = WorkspaceVectorization(
                workspace_id=workspace_id,
                status=status,
                created_at=ago(created),
                started_at=ago(started),
                progress_at=ago(heartbeat),
                **columns,
            )
            session.add(job)
            session.flush()
            return job.id

    return add
