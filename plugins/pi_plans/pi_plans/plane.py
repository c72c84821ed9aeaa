"""The default ``workspace_plans`` implementation: Plane's ``workspace_licenses`` (read only)."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import select

from pi_framework.api import Settings, plane_engine, plane_schema

workspace_licenses, workspaces = plane_schema.workspace_licenses, plane_schema.workspaces

#: soft-deleted licences and soft-deleted workspaces have no plan
PLANS_QUERY = (
    select(workspace_licenses.c.workspace_id, workspace_licenses.c.plan)
    .join(workspaces, workspaces.c.id == workspace_licenses.c.workspace_id)
    .where(workspace_licenses.c.deleted_at.is_(None), workspaces.c.deleted_at.is_(None))
)


def read_plans(settings: Settings) -> Iterator[tuple[str, str]]:
    """Stream ``(workspace_id, plan)`` from Plane's database."""
    with plane_engine(settings).connect() as connection:
        for workspace_id, plan in connection.execution_options(stream_results=True, yield_per=1000).execute(PLANS_QUERY):
            yield str(workspace_id), plan


def workspace_plans(settings: Settings) -> Iterator[tuple[str, str]] | None:
    """No answer (``None``) without ``PLANE_DATABASE_URL``: the plan sync then does nothing rather than downgrade all."""
    if not settings.PLANE_DATABASE_URL:
        return None
    return read_plans(settings)
