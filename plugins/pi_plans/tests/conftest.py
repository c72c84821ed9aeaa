"""A Plane database (real schema, PostgreSQL), the PI database on PostgreSQL, and helpers to look at the result."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from pi_framework import runtime
from pi_framework.celery_app import create_app
from pi_framework.db import get_database
from pi_framework.db.models import IndexedChunk, IndexedDocument, WorkspaceVectorization
from pi_framework.plane import reset_plane_engine, schema
from pi_framework.sync.vectorize import vectorize


class World:
    """Plane workspaces with licences and issues, and what the PI side holds for them."""

    def __init__(self, plane_db: Any, settings: Any) -> None:
        self.plane = plane_db
        self.settings = settings

    # ---------------------------------------------------------------- Plane side
    def workspace(self, plan: str | None = "PRO", issues: int = 3) -> str:
        workspace = self.plane.workspace()
        project = self.plane.project(workspace)
        state = self.plane.state(project, "started")
        self.add_issues(workspace["id"], issues, project=project, state=state)
        if plan is not None:
            self.plane.workspace_license(workspace, plan=plan)
        return workspace["id"]

    def add_issues(self, workspace_id: str, count: int, project: dict | None = None, state: dict | None = None) -> None:
        if project is None:
            with self.plane.engine.connect() as connection:
                row = connection.execute(select(schema.projects).where(schema.projects.c.workspace_id == workspace_id)).first()
            project = dict(row._mapping)
        for n in range(count):
            self.plane.issue(
                project, f"Issue {n} of {workspace_id[:8]}", f"<p>Body {n}: payment webhook retries</p>", state=state
            )

    def set_plan(self, workspace_id: str, plan: str) -> None:
        with self.plane.engine.begin() as connection:
            connection.execute(
                schema.workspace_licenses.update()
                .where(schema.workspace_licenses.c.workspace_id == workspace_id)
                .values(plan=plan)
            )

    def drop_licence(self, workspace_id: str) -> None:
        with self.plane.engine.begin() as connection:
            connection.execute(delete(schema.workspace_licenses).where(schema.workspace_licenses.c.workspace_id == workspace_id))

    # ---------------------------------------------------------------- PI side
    def run_queued_jobs(self) -> dict[str, dict[str, Any]]:
        """Do what a worker does with the dispatched jobs: run each queued job in this process."""
        with get_database().session() as session:
            queued = session.scalars(
                select(WorkspaceVectorization.workspace_id).where(WorkspaceVectorization.status == "queued")
            ).all()
        return {workspace_id: vectorize(workspace_id) for workspace_id in queued}

    def jobs(self, workspace_id: str) -> list[WorkspaceVectorization]:
        with get_database().session() as session:
            return list(
                session.scalars(
                    select(WorkspaceVectorization)
                    .where(WorkspaceVectorization.workspace_id == workspace_id)
                    .order_by(WorkspaceVectorization.id)
                )
            )

    def sink_chunks(self, workspace_id: str) -> int:
        return runtime.get_sinks()[0].count(workspace_id=workspace_id)

    def ledger(self, workspace_id: str) -> tuple[int, int]:
        """(documents, chunks) the ledger holds for the workspace."""
        with get_database().session() as session:
            documents = session.scalar(select(func.count()).where(IndexedDocument.workspace_id == workspace_id))
            chunks = session.scalar(select(func.count()).where(IndexedChunk.workspace_id == workspace_id))
        return documents, chunks

    def broker_messages(self) -> int:
        """Task messages sent to the embedded broker (what a worker would receive)."""
        with sqlite3.connect(self.settings.data_dir / "broker.sqlite") as connection:
            return connection.execute("SELECT count(*) FROM kombu_message").fetchone()[0]


@pytest.fixture
def world(plane_db, pi_env, monkeypatch) -> World:
    reset_plane_engine()
    settings = pi_env(PLANE_DATABASE_URL=plane_db.url, PI_DATABASE_URL=plane_db.url, PI_EMBEDDER="hashing", PI_SINKS="embedded")
    # tasks are sent through this test's own embedded broker, never a shared one
    monkeypatch.setattr("pi_framework.celery_app.celery_app", create_app(settings))
    return World(plane_db, settings)
