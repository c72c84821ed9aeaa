"""Plane cycles (sprints: tables ``cycles`` and ``cycle_issues``) as documents ``cycles:<uuid>``.

The text says what a sprint is about and how far along it is: ``Cycle <name> (<start> – <end>): <description>,
N work items, X done``, counted as Plane counts a cycle's work items (links not deleted; the work item not
deleted, archived or a draft; done = state group ``completed``). Dates are days in the cycle's own time zone.

Visible as Plane shows cycles: not deleted, not archived, its project neither archived nor deleted. The document
carries ``project_ids=[project]``, so search shows it only to members of that project, like the project's work items
(a project guest sees only the cycles they created). A document's version (``updated_at``) is the latest
``updated_at`` of everything its text depends on — the cycle, its project, its links, their work items and those
items' states — so a work item moving to done re-indexes its cycle and a re-feed finds a stale one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from loguru import logger
from sqlalchemy import Row, and_, case, distinct, func, or_, select, type_coerce

from pi_cycles.schema import cycle_issues, cycles
from pi_framework.api import Document, Marks, Observed, PlaneSource, chunked, plane_schema

issues, projects, states = plane_schema.issues, plane_schema.projects, plane_schema.states

_FROM = cycles.outerjoin(projects, projects.c.id == cycles.c.project_id)
_ROW = (
    cycles.c.id,
    cycles.c.workspace_id,
    cycles.c.project_id,
    cycles.c.name,
    cycles.c.description,
    cycles.c.start_date,
    cycles.c.end_date,
    cycles.c.timezone,
    cycles.c.owned_by_id,
    cycles.c.created_by_id,
    cycles.c.updated_at,
    cycles.c.deleted_at,
    cycles.c.archived_at,
    projects.c.id.label("project_found"),
    projects.c.identifier,
    projects.c.updated_at.label("project_updated_at"),
    projects.c.archived_at.label("project_archived_at"),
    projects.c.deleted_at.label("project_deleted_at"),
)
#: a link that counts: not deleted, to a work item that is not deleted, archived or a draft (Plane's cycle counts)
_LINKED = and_(issues.c.id == cycle_issues.c.issue_id, cycle_issues.c.deleted_at.is_(None))
_COUNTED = and_(
    issues.c.id.is_not(None), issues.c.deleted_at.is_(None), issues.c.archived_at.is_(None), issues.c.is_draft.is_(False)
)


@dataclass(frozen=True)
class Progress:
    """A cycle's work items (``total``, ``done``) and the latest change among its links, their items and states."""

    total: int = 0
    done: int = 0
    changed_at: datetime | None = None


def hidden_because(row: Row) -> str | None:
    """Why Plane hides this cycle, or ``None`` when it is visible."""
    if row.deleted_at is not None:
        return "deleted"
    if row.archived_at is not None:
        return "archived"
    if row.project_found is None:
        return "project missing"
    if row.project_deleted_at is not None:
        return "project deleted"
    if row.project_archived_at is not None:
        return "project archived"
    return None


def _maybe_visible(workspace_id: str) -> Any:
    """The SQL half of :func:`hidden_because` (a cycle whose project row is gone still comes back, to be logged)."""
    return and_(
        cycles.c.workspace_id == workspace_id,
        cycles.c.deleted_at.is_(None),
        cycles.c.archived_at.is_(None),
        or_(projects.c.id.is_(None), and_(projects.c.archived_at.is_(None), projects.c.deleted_at.is_(None))),
    )


def day(moment: datetime, timezone: str | None) -> str:
    """The calendar day of *moment* in the cycle's time zone (UTC when unknown)."""
    try:
        zone = ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return moment.astimezone(zone).date().isoformat()


def span(start: datetime | None, end: datetime | None, timezone: str | None) -> str:
    if start is not None and end is not None:
        return f"{day(start, timezone)} – {day(end, timezone)}"
    if start is not None:
        return f"from {day(start, timezone)}"
    if end is not None:
        return f"until {day(end, timezone)}"
    return "no dates"


def summary(row: Row, progress: Progress) -> str:
    """``Cycle <name> (<start> – <end>): <description>, N work items, X done``."""
    items = f"{progress.total} work item{'' if progress.total == 1 else 's'}, {progress.done} done"
    description = (row.description or "").strip()
    return f"Cycle {row.name} ({span(row.start_date, row.end_date, row.timezone)}): " + (
        f"{description}, {items}" if description else items
    )


def _batches(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class CyclesSource(PlaneSource):
    name = "cycles"
    kind = "cycles"
    #: the cycle tables are this plugin's own (the core's Plane schema does not declare them)
    tables = (cycles, cycle_issues)
    tracked = ("cycles", "cycle_issues", "issues", "states", "projects")

    # ------------------------------------------------------------------ queries
    def progress(self, cycle_ids: Sequence[str]) -> dict[str, Progress]:
        """Work items and latest change of each cycle in *cycle_ids* (one grouped query)."""
        if not cycle_ids:
            return {}
        latest = [
            type_coerce(func.max(column), plane_schema.UTCDateTime()).label(label)
            for column, label in (
                (cycle_issues.c.updated_at, "links_at"),
                (issues.c.updated_at, "issues_at"),
                (states.c.updated_at, "states_at"),
            )
        ]
        stmt = (
            select(
                cycle_issues.c.cycle_id,
                func.count(distinct(case((_COUNTED, issues.c.id)))).label("total"),
                func.count(distinct(case((and_(_COUNTED, states.c.group == "completed"), issues.c.id)))).label("done"),
                *latest,
            )
            .select_from(cycle_issues.outerjoin(issues, _LINKED).outerjoin(states, states.c.id == issues.c.state_id))
            .where(cycle_issues.c.cycle_id.in_(list(cycle_ids)))
            .group_by(cycle_issues.c.cycle_id)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(stmt).all()
        return {
            str(row.cycle_id): Progress(
                int(row.total),
                int(row.done),
                max((at for at in (row.links_at, row.issues_at, row.states_at) if at), default=None),
            )
            for row in rows
        }

    @staticmethod
    def version(row: Row, progress: Progress) -> datetime:
        """The latest ``updated_at`` among the cycle, its project and everything :meth:`progress` counted."""
        return max(at for at in (row.updated_at, row.project_updated_at, progress.changed_at) if at is not None)

    def document(self, row: Row, progress: Progress) -> Document:
        return Document(
            id=self.document_id(row.id),
            source=self.name,
            kind=self.kind,
            workspace_id=str(row.workspace_id),
            title=f"Cycle {row.name}",
            body=summary(row, progress),
            body_format="text",
            updated_at=self.version(row, progress),
            project_ids=[str(row.project_id)],
            metadata={
                "project_id": str(row.project_id),
                "project_identifier": row.identifier,
                "start_date": row.start_date and row.start_date.isoformat(),
                "end_date": row.end_date and row.end_date.isoformat(),
                "work_items": progress.total,
                "done": progress.done,
                "owned_by": row.owned_by_id and str(row.owned_by_id),
                # search's guest rule: a project guest without guest_view_all_features sees only what they created
                "created_by": row.created_by_id and str(row.created_by_id),
            },
        )

    def evaluate(self, rows: list[Row], workspace_id: str) -> Iterator[Document]:
        """Each row as an upsert when visible, a deletion when hidden; unusable rows are logged and skipped."""
        visible = []
        for row in rows:
            reason = hidden_because(row)
            if reason == "project missing":
                logger.warning("cycles: skipped {}: project {} does not exist", self.document_id(row.id), row.project_id)
            if reason is None:
                visible.append(row)
            else:
                yield self.removed(row.id, workspace_id, row.updated_at)
        progress = self.progress([row.id for row in visible])
        for row in visible:
            document = self.build(row, lambda row: self.document(row, progress.get(str(row.id), Progress())))
            if document is not None:
                yield document

    def _visible_rows(self, workspace_id: str, page_size: int | None = None) -> Iterator[list[Row]]:
        stmt = select(*_ROW).select_from(_FROM).where(_maybe_visible(workspace_id))
        size = page_size or self.page_size
        return _batches(self.paged(stmt, [cycles.c.id], ["id"], size), size)

    # ------------------------------------------------------------------ Source protocol
    def iter_documents(self, workspace_id: str) -> Iterator[Document]:
        for rows in self._visible_rows(workspace_id):
            yield from (document for document in self.evaluate(rows, workspace_id) if not document.deleted)

    def visible_versions(self, workspace_id: str) -> Iterable[tuple[str, datetime]]:
        for rows in self._visible_rows(workspace_id, self.id_page_size):
            rows = [row for row in rows if hidden_because(row) is None]
            progress = self.progress([row.id for row in rows])
            for row in rows:
                yield self.document_id(row.id), self.version(row, progress.get(str(row.id), Progress()))

    def changed_documents(self, workspace_id: str, marks: Marks, observed: Observed) -> Iterator[Document]:
        touched = set(self.changed_ids(cycles, workspace_id, marks, observed))
        links = select(cycle_issues.c.id, cycle_issues.c.updated_at, cycle_issues.c.cycle_id).where(
            cycle_issues.c.workspace_id == workspace_id
        )
        for row in self.scan_changed(links, cycle_issues, marks["cycle_issues"], observed["cycle_issues"]):
            touched.add(str(row.cycle_id))
        # a changed work item, state or project changes the text of the cycles hanging off it (counts, visibility)
        linked = select(cycle_issues.c.cycle_id).select_from(cycle_issues.join(issues, _LINKED))
        in_workspace = cycle_issues.c.workspace_id == workspace_id
        for column, ids in (
            (issues.c.id, self.changed_ids(issues, workspace_id, marks, observed)),
            (issues.c.state_id, self.changed_ids(states, workspace_id, marks, observed)),
        ):
            touched.update(self._cycle_ids(linked.where(in_workspace, column.in_(batch)) for batch in chunked(ids, 500)))
        project_cycles = select(cycles.c.id.label("cycle_id")).where(cycles.c.workspace_id == workspace_id)
        touched.update(
            self._cycle_ids(
                project_cycles.where(cycles.c.project_id.in_(batch))
                for batch in chunked(self.changed_ids(projects, workspace_id, marks, observed), 500)
            )
        )
        for batch in chunked(sorted(touched), 500):
            stmt = select(*_ROW).select_from(_FROM).where(cycles.c.workspace_id == workspace_id, cycles.c.id.in_(batch))
            with self.engine.connect() as connection:
                rows = connection.execute(stmt).all()
            yield from self.evaluate(rows, workspace_id)
            for gone in set(batch) - {str(row.id) for row in rows}:  # a link to a cycle row that no longer exists
                yield self.removed(gone, workspace_id)

    def _cycle_ids(self, statements: Iterable[Any]) -> set[str]:
        found: set[str] = set()
        for stmt in statements:
            with self.engine.connect() as connection:
                found.update(str(cycle_id) for cycle_id in connection.scalars(stmt.distinct()))
        return found
