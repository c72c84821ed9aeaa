"""Plane work items (table ``issues``) as documents ``issues:<uuid>``.

Visibility follows Plane's ``IssueManager`` (see the reference queries in ``plane_schema.sql``): not
deleted, not archived, not a draft, its project neither archived nor deleted, its state not triage.
An issue also changes when its project (identifier, archive, delete) or its state (group) changes,
so those tables are watched too: a change there re-evaluates the issues that hang off it.

Every work item carries Plane's filter fields in its metadata (what search filters on, see
:class:`~pi_framework.api.Filters`): ``state`` (name), ``state_group``, ``priority``, ``labels`` (names),
``assignees`` (user ids), ``project_id`` / ``project_identifier``, ``identifier`` (``WEB-12``), ``created_at`` and
``updated_at``. Labels and assignees are rows of ``issue_labels`` / ``issue_assignees`` (and ``labels`` for the
names), watched like the rest: a link added or removed, or a label renamed, re-evaluates its work items, and since
only metadata changed the pipeline updates the sinks in place, embedding nothing. Changes no ``updated_at`` shows
(Plane's ``bulk_update`` of ``state_id``, a link deleted outright) are found by the reconcile, which compares
:meth:`IssuesSource.visible_metadata` with what the index holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from loguru import logger
from sqlalchemy import Row, and_, or_, select

from pi_framework.api import Document, Marks, Observed, PlaneSource, chunked, plane_schema

issues, projects, states = plane_schema.issues, plane_schema.projects, plane_schema.states
labels, issue_labels, issue_assignees = plane_schema.labels, plane_schema.issue_labels, plane_schema.issue_assignees

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
#: what a document's metadata is made of (no text: the reconcile reads these for every visible work item)
_METADATA = (
    issues.c.project_id,
    issues.c.priority,
    issues.c.parent_id,
    issues.c.sequence_id,
    issues.c.state_id,
    issues.c.created_by_id,
    issues.c.created_at,
    issues.c.workspace_id,
    projects.c.identifier,
    states.c.name.label("state_name"),
)
_CONTENT = (*_METADATA, issues.c.name, issues.c.description_html)
#: rows per batch of label / assignee lookups
_BATCH = 500


class Relations:
    """The labels (names) and assignees (user ids) of a batch of work items: links and labels not deleted."""

    def __init__(self, source: PlaneSource, issue_ids: Sequence[str]) -> None:
        self.labels: dict[str, list[str]] = {}
        self.assignees: dict[str, list[str]] = {}
        if not issue_ids:
            return
        ids = list(issue_ids)
        with source.engine.connect() as connection:
            for issue_id, name in connection.execute(
                select(issue_labels.c.issue_id, labels.c.name)
                .select_from(issue_labels.join(labels, labels.c.id == issue_labels.c.label_id))
                .where(issue_labels.c.issue_id.in_(ids), issue_labels.c.deleted_at.is_(None), labels.c.deleted_at.is_(None))
            ):
                self.labels.setdefault(str(issue_id), []).append(name)
            for issue_id, assignee_id in connection.execute(
                select(issue_assignees.c.issue_id, issue_assignees.c.assignee_id).where(
                    issue_assignees.c.issue_id.in_(ids), issue_assignees.c.deleted_at.is_(None)
                )
            ):
                self.assignees.setdefault(str(issue_id), []).append(str(assignee_id))

    def of(self, issue_id: str) -> tuple[list[str], list[str]]:
        return sorted(set(self.labels.get(str(issue_id), []))), sorted(set(self.assignees.get(str(issue_id), [])))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


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
    tracked = ("issues", "projects", "states", "issue_labels", "issue_assignees", "labels")

    @staticmethod
    def metadata(row: Row, relations: Relations) -> dict[str, Any]:
        """A work item's metadata: Plane's filter fields and the rest (one function for documents and the reconcile)."""
        label_names, assignee_ids = relations.of(row.id)
        return {
            "project_id": str(row.project_id),
            "project_identifier": row.identifier,
            "identifier": f"{row.identifier}-{row.sequence_id}",
            "sequence_id": row.sequence_id,
            "state_id": row.state_id and str(row.state_id),
            "state": row.state_name,
            "state_group": row.state_group,
            "priority": row.priority if row.priority in PRIORITIES else "none",  # Plane shows unknown values as none
            "labels": label_names,
            "assignees": assignee_ids,
            "parent_id": row.parent_id and str(row.parent_id),
            "archived": row.archived_at is not None,
            "draft": bool(row.is_draft),
            "created_at": _iso(row.created_at),
            "updated_at": _iso(row.updated_at),
            # search's guest rule: a project guest without guest_view_all_features sees only what they created
            "created_by": row.created_by_id and str(row.created_by_id),
        }

    def document(self, row: Row, relations: Relations | None = None) -> Document:
        key = f"{row.identifier}-{row.sequence_id}"
        relations = relations if relations is not None else Relations(self, [row.id])
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
            metadata=self.metadata(row, relations),
        )

    def evaluate(self, row: Row, workspace_id: str, relations: Relations | None = None) -> Document | None:
        """The row as an upsert when visible, a deletion when hidden; ``None`` (logged) when unusable."""
        reason = hidden_because(row)
        if reason == "project missing":
            logger.warning("issues: skipped {}: project {} does not exist", self.document_id(row.id), row.project_id)
        if reason is not None:
            return self.removed(row.id, workspace_id, row.updated_at)
        return self.build(row, lambda row: self.document(row, relations))

    def evaluate_all(self, rows: Iterable[Row], workspace_id: str) -> Iterator[Document]:
        """:meth:`evaluate` of every row, their labels and assignees read in batches."""
        for batch in chunked(rows, _BATCH):
            relations = Relations(self, [row.id for row in batch if hidden_because(row) is None])
            for row in batch:
                document = self.evaluate(row, workspace_id, relations)
                if document is not None:
                    yield document

    # ------------------------------------------------------------------ Source protocol
    def iter_documents(self, workspace_id: str) -> Iterator[Document]:
        stmt = select(*_VISIBILITY, *_CONTENT).select_from(_FROM).where(_maybe_visible(workspace_id))
        for document in self.evaluate_all(self.paged(stmt, [issues.c.id], ["id"]), workspace_id):
            if not document.deleted:
                yield document

    def visible_metadata(self, workspace_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(document id, metadata)`` of every visible work item, text left out: what the reconcile compares with the
        index to find metadata changes no ``updated_at`` shows (Plane's bulk ``state_id`` update)."""
        stmt = select(*_VISIBILITY, *_METADATA).select_from(_FROM).where(_maybe_visible(workspace_id))
        for batch in chunked(self.paged(stmt, [issues.c.id], ["id"], self.id_page_size), _BATCH):
            visible = [row for row in batch if hidden_because(row) is None]
            relations = Relations(self, [row.id for row in visible])
            for row in visible:
                yield self.document_id(row.id), self.metadata(row, relations)

    def visible_versions(self, workspace_id: str) -> Iterable[tuple[str, datetime]]:
        stmt = select(*_VISIBILITY).select_from(_FROM).where(_maybe_visible(workspace_id))
        for row in self.paged(stmt, [issues.c.id], ["id"], self.id_page_size):
            if hidden_because(row) is None:
                yield self.document_id(row.id), row.updated_at

    def _linked_issues(self, table: Any, workspace_id: str, marks: Marks, observed: Observed) -> set[str]:
        """Work items whose links in *table* (``issue_labels``, ``issue_assignees``) changed since the cursor."""
        stmt = select(table.c.id, table.c.updated_at, table.c.issue_id).where(table.c.workspace_id == workspace_id)
        return {str(row.issue_id) for row in self.scan_changed(stmt, table, marks[table.name], observed[table.name])}

    def _labelled_issues(self, label_ids: list[str]) -> set[str]:
        """Work items carrying one of *label_ids* (a label renamed or deleted changes their metadata)."""
        found: set[str] = set()
        for batch in chunked(label_ids, 500):
            stmt = select(issue_labels.c.issue_id).where(issue_labels.c.label_id.in_(batch), issue_labels.c.deleted_at.is_(None))
            with self.engine.connect() as connection:
                found.update(str(issue_id) for issue_id in connection.scalars(stmt.distinct()))
        return found

    def changed_documents(self, workspace_id: str, marks: Marks, observed: Observed) -> Iterator[Document]:
        changed_projects = self.changed_ids(projects, workspace_id, marks, observed)
        changed_states = self.changed_ids(states, workspace_id, marks, observed)
        # labels and assignees: a link added or removed, or a label renamed, changes only the work items' metadata
        relinked = self._linked_issues(issue_labels, workspace_id, marks, observed)
        relinked |= self._linked_issues(issue_assignees, workspace_id, marks, observed)
        relinked |= self._labelled_issues(self.changed_ids(labels, workspace_id, marks, observed))
        content = select(*_VISIBILITY, *_CONTENT).select_from(_FROM)
        emitted: set[str] = set()

        def fresh(rows: Iterable[Row]) -> Iterator[Row]:
            for row in rows:
                if row.id not in emitted:
                    emitted.add(row.id)
                    yield row

        yield from self.evaluate_all(
            fresh(
                self.scan_changed(
                    content.where(issues.c.workspace_id == workspace_id), issues, marks["issues"], observed["issues"]
                )
            ),
            workspace_id,
        )
        # a project or state change re-evaluates every issue hanging off it (identifier, archive, triage); a label or
        # assignee change the issues it links
        for column, ids in (
            (issues.c.project_id, changed_projects),
            (issues.c.state_id, changed_states),
            (issues.c.id, sorted(relinked)),
        ):
            for batch in chunked(ids, 500):
                stmt = content.where(issues.c.workspace_id == workspace_id, column.in_(batch))
                yield from self.evaluate_all(fresh(self.paged(stmt, [issues.c.id], ["id"])), workspace_id)
