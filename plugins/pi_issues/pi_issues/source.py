"""Plane work items (table ``issues``) as documents ``issues:<uuid>``.

Visibility follows Plane's ``IssueManager`` (see the reference queries in ``plane_schema.sql``): not
deleted, not archived, not a draft, its project neither archived nor deleted, its state not triage.
An issue also changes when its project (identifier, archive, delete) or its state (group) changes,
so those tables are watched too: a change there re-evaluates the issues that hang off it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from loguru import logger
from sqlalchemy import Row, and_, or_, select

from pi_framework.api import Document, Marks, Observed, PlaneSource, chunked, plane_schema

issues, projects, states = plane_schema.issues, plane_schema.projects, plane_schema.states

PRIORITIES = frozenset({"urgent", "high", "medium", "low", "none"})

_FROM = issues.outerjoin(projects, projects.c.id == issues.c.project_id).outerjoin(states, states.c.id == issues.c.state_id)
_VISIBILITY = (
    issues.c.id,
    issues.c.updated_at,
    issues.c.deleted_at,
    issues.c.archived_at,
    issues.c.is_draft,
    projects.c.id.label("project_found"),
    projects.c.archived_at.label("project_archived_at"),
    projects.c.deleted_at.label("project_deleted_at"),
    states.c.group.label("state_group"),
)
_CONTENT = (
    issues.c.project_id,
    issues.c.name,
    issues.c.description_html,
    issues.c.priority,
    issues.c.parent_id,
    issues.c.sequence_id,
    issues.c.state_id,
    issues.c.created_by_id,
    projects.c.identifier,
)


def hidden_because(row: Row) -> str | None:
    """Why Plane hides this issue, or ``None`` when it is visible."""
    if row.deleted_at is not None:
        return "deleted"
    if row.archived_at is not None:
        return "archived"
    if row.is_draft:
        return "draft"
    if row.project_found is None:
        return "project missing"
    if row.project_deleted_at is not None:
        return "project deleted"
    if row.project_archived_at is not None:
        return "project archived"
    if row.state_group == "triage":
        return "triage"
    return None


def _maybe_visible(workspace_id: str):  # noqa: ANN202 - a SQLAlchemy clause
    """The SQL half of :func:`hidden_because` (rows with a missing project still come back, to be logged)."""
    return and_(
        issues.c.workspace_id == workspace_id,
        issues.c.deleted_at.is_(None),
        issues.c.archived_at.is_(None),
        issues.c.is_draft.is_(False),
        or_(projects.c.id.is_(None), and_(projects.c.archived_at.is_(None), projects.c.deleted_at.is_(None))),
        or_(states.c.id.is_(None), states.c.group != "triage"),
    )


class IssuesSource(PlaneSource):
    name = "issues"
    kind = "issues"
    tracked = ("issues", "projects", "states")

    def document(self, row: Row) -> Document:
        key = f"{row.identifier}-{row.sequence_id}"
        priority = row.priority if row.priority in PRIORITIES else "none"  # Plane shows unknown values as none
        return Document(
            id=self.document_id(row.id),
            source=self.name,
            kind=self.kind,
            workspace_id=str(row.workspace_id),
            title=f"{key} {row.name}".strip(),
            body=row.description_html or "",
            body_format="html",
            key=key,
            updated_at=row.updated_at,
            project_ids=[str(row.project_id)],
            metadata={
                "project_id": str(row.project_id),
                "project_identifier": row.identifier,
                "sequence_id": row.sequence_id,
                "state_id": row.state_id and str(row.state_id),
                "state_group": row.state_group,
                "priority": priority,
                "parent_id": row.parent_id and str(row.parent_id),
                "archived": row.archived_at is not None,
                "draft": bool(row.is_draft),
                # search's guest rule: a project guest without guest_view_all_features sees only what they created
                "created_by": row.created_by_id and str(row.created_by_id),
            },
        )

    def evaluate(self, row: Row, workspace_id: str) -> Document | None:
        """The row as an upsert when visible, a deletion when hidden; ``None`` (logged) when unusable."""
        reason = hidden_because(row)
        if reason == "project missing":
            logger.warning("issues: skipped {}: project {} does not exist", self.document_id(row.id), row.project_id)
        if reason is not None:
            return self.removed(row.id, workspace_id, row.updated_at)
        return self.build(row, self.document)

    # ------------------------------------------------------------------ Source protocol
    def iter_documents(self, workspace_id: str) -> Iterator[Document]:
        stmt = select(*_VISIBILITY, *_CONTENT, issues.c.workspace_id).select_from(_FROM).where(_maybe_visible(workspace_id))
        for row in self.paged(stmt, [issues.c.id], ["id"]):
            document = self.evaluate(row, workspace_id)
            if document is not None and not document.deleted:
                yield document

    def visible_versions(self, workspace_id: str) -> Iterable[tuple[str, datetime]]:
        stmt = select(*_VISIBILITY).select_from(_FROM).where(_maybe_visible(workspace_id))
        for row in self.paged(stmt, [issues.c.id], ["id"], self.id_page_size):
            if hidden_because(row) is None:
                yield self.document_id(row.id), row.updated_at

    def changed_documents(self, workspace_id: str, marks: Marks, observed: Observed) -> Iterator[Document]:
        changed_projects = self.changed_ids(projects, workspace_id, marks, observed)
        changed_states = self.changed_ids(states, workspace_id, marks, observed)
        content = select(*_VISIBILITY, *_CONTENT, issues.c.workspace_id).select_from(_FROM)
        emitted: set[str] = set()
        for row in self.scan_changed(
            content.where(issues.c.workspace_id == workspace_id), issues, marks["issues"], observed["issues"]
        ):
            emitted.add(row.id)
            document = self.evaluate(row, workspace_id)
            if document is not None:
                yield document
        # a project or state change re-evaluates every issue hanging off it (identifier, archive, triage)
        for column, ids in ((issues.c.project_id, changed_projects), (issues.c.state_id, changed_states)):
            for batch in chunked(ids, 500):
                stmt = content.where(issues.c.workspace_id == workspace_id, column.in_(batch))
                for row in self.paged(stmt, [issues.c.id], ["id"]):
                    if row.id not in emitted:
                        emitted.add(row.id)
                        document = self.evaluate(row, workspace_id)
                        if document is not None:
                            yield document
