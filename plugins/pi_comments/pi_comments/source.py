"""Plane work-item comments (table ``issue_comments``) as documents ``comments:<uuid>``.

A comment is searchable exactly when Plane shows it: the comment is not deleted and its work item is visible by the
rules of the ``issues`` source (Plane's ``IssueManager``): the work item not deleted, archived or a draft, not in
triage (intake), its project neither archived nor deleted. The document carries the work item's project
(``project_ids``, so search shows it only to that project's members, as the work item) and key, and says what it
is: title ``Comment on WEB-12: <work item name>``, key ``WEB-12``.

Its text depends on the work item (name, key, project) and its visibility on the work item, the project and the
state, so all four tables are watched: a change to any of them re-evaluates the comments hanging off it (re-emitted
with the new title or project, or removed). A document's version (``updated_at``) is the latest ``updated_at`` of the
comment, its work item and that item's project, so a renamed or moved work item re-indexes its comments and a re-feed
finds a stale one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from loguru import logger
from sqlalchemy import Row, and_, or_, select

from pi_comments.schema import issue_comments
from pi_framework.api import Document, Marks, Observed, PlaneSource, chunked, plane_schema

issues, projects, states = plane_schema.issues, plane_schema.projects, plane_schema.states
comments = issue_comments

_FROM = (
    comments.outerjoin(issues, issues.c.id == comments.c.issue_id)
    .outerjoin(projects, projects.c.id == issues.c.project_id)
    .outerjoin(states, states.c.id == issues.c.state_id)
)
#: what visibility and the version need (``id`` and ``updated_at`` are the comment's: the keyset of the scans)
_VISIBILITY = (
    comments.c.id,
    comments.c.workspace_id,
    comments.c.issue_id,
    comments.c.updated_at,
    comments.c.deleted_at,
    issues.c.id.label("issue_found"),
    issues.c.updated_at.label("issue_updated_at"),
    issues.c.deleted_at.label("issue_deleted_at"),
    issues.c.archived_at.label("issue_archived_at"),
    issues.c.is_draft.label("issue_is_draft"),
    projects.c.id.label("project_found"),
    projects.c.updated_at.label("project_updated_at"),
    projects.c.archived_at.label("project_archived_at"),
    projects.c.deleted_at.label("project_deleted_at"),
    states.c.group.label("state_group"),
)
#: what the document says
_CONTENT = (
    comments.c.comment_html,
    comments.c.actor_id,
    comments.c.created_by_id,
    comments.c.parent_id,
    comments.c.access,
    comments.c.edited_at,
    issues.c.name.label("issue_name"),
    issues.c.sequence_id,
    issues.c.project_id.label("issue_project_id"),
    issues.c.created_by_id.label("issue_created_by_id"),
    projects.c.identifier,
)
_ROW = select(*_VISIBILITY, *_CONTENT).select_from(_FROM)


def hidden_because(row: Row) -> str | None:
    """Why Plane hides this comment, or ``None`` when it is visible (the ``issues`` source's rules for its item)."""
    if row.deleted_at is not None:
        return "deleted"
    if row.issue_found is None:
        return "work item missing"
    if row.issue_deleted_at is not None:
        return "work item deleted"
    if row.issue_archived_at is not None:
        return "work item archived"
    if row.issue_is_draft:
        return "work item draft"
    if row.project_found is None:
        return "project missing"
    if row.project_deleted_at is not None:
        return "project deleted"
    if row.project_archived_at is not None:
        return "project archived"
    if row.state_group == "triage":
        return "work item in triage"
    return None


def _maybe_visible(workspace_id: str) -> Any:
    """The SQL half of :func:`hidden_because` (a comment whose work item or project row is gone still comes back, to be
    logged)."""
    return and_(
        comments.c.workspace_id == workspace_id,
        comments.c.deleted_at.is_(None),
        or_(
            issues.c.id.is_(None),
            and_(
                issues.c.deleted_at.is_(None),
                issues.c.archived_at.is_(None),
                issues.c.is_draft.is_(False),
                or_(projects.c.id.is_(None), and_(projects.c.archived_at.is_(None), projects.c.deleted_at.is_(None))),
                or_(states.c.id.is_(None), states.c.group != "triage"),
            ),
        ),
    )


def version(row: Row) -> datetime:
    """The latest ``updated_at`` among the comment, its work item and that item's project (what the text depends on)."""
    return max(at for at in (row.updated_at, row.issue_updated_at, row.project_updated_at) if at is not None)


def key(row: Row) -> str:
    return f"{row.identifier}-{row.sequence_id}"


class CommentsSource(PlaneSource):
    name = "comments"
    kind = "comments"
    #: Plane's comments table is this plugin's own (the core's Plane schema does not declare it)
    tables = (issue_comments,)
    #: the comment rows first (the documents' table), then what their text and visibility depend on
    tracked = ("issue_comments", "issues", "projects", "states")

    def document(self, row: Row) -> Document:
        item = key(row)
        return Document(
            id=self.document_id(row.id),
            source=self.name,
            kind=self.kind,
            workspace_id=str(row.workspace_id),
            title=f"Comment on {item}: {row.issue_name}".strip(),
            body=row.comment_html or "",
            body_format="html",
            key=item,
            updated_at=version(row),
            project_ids=[str(row.issue_project_id)],
            metadata={
                "issue_id": str(row.issue_id),
                "project_id": str(row.issue_project_id),
                "project_identifier": row.identifier,
                "sequence_id": row.sequence_id,
                "author": (row.actor_id or row.created_by_id) and str(row.actor_id or row.created_by_id),
                "parent_id": row.parent_id and str(row.parent_id),
                "access": row.access,
                "edited_at": row.edited_at and row.edited_at.isoformat(),
                # search's guest rule, as for the work item itself: a project guest without guest_view_all_features
                # sees only the work items they created, so only the comments on those
                "created_by": row.issue_created_by_id and str(row.issue_created_by_id),
            },
        )

    def evaluate(self, row: Row, workspace_id: str) -> Document | None:
        """The row as an upsert when visible, a deletion when hidden; ``None`` (logged) when unusable."""
        reason = hidden_because(row)
        if reason in ("work item missing", "project missing"):
            logger.warning("comments: skipped {}: {} (work item {})", self.document_id(row.id), reason, row.issue_id)
        if reason is not None:
            return self.removed(row.id, workspace_id, version(row))
        return self.build(row, self.document)

    # ------------------------------------------------------------------ Source protocol
    def iter_documents(self, workspace_id: str) -> Iterator[Document]:
        for row in self.paged(_ROW.where(_maybe_visible(workspace_id)), [comments.c.id], ["id"]):
            document = self.evaluate(row, workspace_id)
            if document is not None and not document.deleted:
                yield document

    def visible_versions(self, workspace_id: str) -> Iterable[tuple[str, datetime]]:
        stmt = select(*_VISIBILITY).select_from(_FROM).where(_maybe_visible(workspace_id))
        for row in self.paged(stmt, [comments.c.id], ["id"], self.id_page_size):
            if hidden_because(row) is None:
                yield self.document_id(row.id), version(row)

    def changed_documents(self, workspace_id: str, marks: Marks, observed: Observed) -> Iterator[Document]:
        # read every watermark before yielding anything: the cursor is taken once the documents are consumed
        changed_issues = self.changed_ids(issues, workspace_id, marks, observed)
        changed_projects = self.changed_ids(projects, workspace_id, marks, observed)
        changed_states = self.changed_ids(states, workspace_id, marks, observed)
        in_workspace = _ROW.where(comments.c.workspace_id == workspace_id)
        emitted: set[str] = set()
        for row in self.scan_changed(in_workspace, comments, marks["issue_comments"], observed["issue_comments"]):
            emitted.add(row.id)
            document = self.evaluate(row, workspace_id)
            if document is not None:
                yield document
        # a change of the work item (edit, move, archive, delete, triage), its project (identifier, archive, delete) or
        # its state (moved to the triage group) re-evaluates every comment hanging off it
        for column, ids in (
            (comments.c.issue_id, changed_issues),
            (issues.c.project_id, changed_projects),
            (issues.c.state_id, changed_states),
        ):
            for batch in chunked(ids, 500):
                for row in self.paged(in_workspace.where(column.in_(batch)), [comments.c.id], ["id"]):
                    if row.id not in emitted:
                        emitted.add(row.id)
                        document = self.evaluate(row, workspace_id)
                        if document is not None:
                            yield document
