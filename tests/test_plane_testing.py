"""The Plane test kit: the real schema loads, the Core tables match it, the factories write valid rows."""

from __future__ import annotations

from sqlalchemy import inspect, select

from pi_framework.plane import schema
from pi_framework.plane.sample import create_sqlite_plane


def test_core_tables_match_the_reference_schema(plane_db) -> None:
    inspector = inspect(plane_db.engine)
    for table in schema.metadata.sorted_tables:
        real = {column["name"]: column["nullable"] for column in inspector.get_columns(table.name)}
        declared = {column.name: column.nullable for column in table.columns}
        assert declared == real, table.name


def test_factories_fill_every_not_null_column(plane_db) -> None:
    workspace = plane_db.workspace()
    project = plane_db.project(workspace)
    state = plane_db.state(project, "backlog")
    first = plane_db.issue(project, "First", "<p>hello</p>", state=state)
    second = plane_db.issue(project, "Second")
    plane_db.page(workspace, name="Wiki")
    plane_db.page(workspace, name="Project page", projects=(project,))
    plane_db.workspace_license(workspace, "pro")
    with plane_db.engine.connect() as connection:
        rows = connection.execute(
            select(schema.issues.c.sequence_id, schema.issues.c.description_stripped).order_by(schema.issues.c.sequence_id)
        ).all()
        assert [tuple(row) for row in rows] == [(1, "hello"), (2, "")]
        assert connection.execute(select(schema.project_pages.c.page_id)).scalar_one()
    assert first["id"] != second["id"]


def test_the_same_factories_work_on_sqlite(tmp_path) -> None:
    plane = create_sqlite_plane(str(tmp_path / "plane.sqlite"))
    workspace = plane.workspace()
    issue = plane.issue(plane.project(workspace), "On SQLite", "<p>x</p>")
    plane.archive(schema.issues, issue["id"])
    with plane.engine.connect() as connection:
        row = connection.execute(select(schema.issues).where(schema.issues.c.id == issue["id"])).one()
    assert row.archived_at is not None and row.updated_at.tzinfo is not None
