"""Plane pages (table ``pages``) as documents ``pages:<uuid>``.

A page is visible when it is neither deleted nor archived and it is either a workspace-level page
(``is_global``) or linked through ``project_pages`` to at least one live project (link not deleted,
project neither deleted nor archived). Its ``project_ids`` are those live links. A private page
(``access = 1``) carries its owner as ``owner_id``: search shows it to that user only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime

from sqlalchemy import Row, and_, select

from pi_framework.api import Document, Marks, Observed, PlaneSource, chunked, plane_schema

pages, project_pages, projects = plane_schema.pages, plane_schema.project_pages, plane_schema.projects

PRIVATE = 1

_COLUMNS = (
    pages.c.id,
    pages.c.workspace_id,
    pages.c.updated_at,
    pages.c.deleted_at,
    pages.c.archived_at,
    pages.c.is_global,
    pages.c.access,
    pages.c.owned_by_id,
    pages.c.parent_id,
    pages.c.name,
    pages.c.description_html,
)
_LIVE_LINKS = (
    select(project_pages.c.page_id, project_pages.c.project_id)
    .join(projects, projects.c.id == project_pages.c.project_id)
    .where(project_pages.c.deleted_at.is_(None), projects.c.deleted_at.is_(None), projects.c.archived_at.is_(None))
)


def hidden_because(row: Row, project_ids: list[str]) -> str | None:
    if row.deleted_at is not None:
        return "deleted"
    if row.archived_at is not None:
        return "archived"
    if not row.is_global and not project_ids:
        return "no live project"
    return None


class PagesSource(PlaneSource):
    name = "pages"
    kind = "pages"
    tracked = ("pages", "project_pages", "projects")

    def links(self, page_ids: list[str]) -> dict[str, list[str]]:
        """Live project ids of each page."""
        found: dict[str, list[str]] = defaultdict(list)
        for batch in chunked(page_ids, 500):
            with self.engine.connect() as connection:
                for page_id, project_id in connection.execute(_LIVE_LINKS.where(project_pages.c.page_id.in_(batch))):
                    found[str(page_id)].append(str(project_id))
        return found

    def document(self, row: Row, project_ids: list[str]) -> Document:
        private = row.access == PRIVATE
        return Document(
            id=self.document_id(row.id),
            source=self.name,
            kind=self.kind,
            workspace_id=str(row.workspace_id),
            title=row.name or "",
            body=row.description_html or "",
            body_format="html",
            updated_at=row.updated_at,
            project_ids=sorted(project_ids),
            owner_id=str(row.owned_by_id) if private else None,
            metadata={
                "access": row.access,
                "private": private,
                "is_global": bool(row.is_global),
                "owned_by_id": str(row.owned_by_id),
                "parent_id": row.parent_id and str(row.parent_id),
                # search's guest rule: Plane shows a project guest without guest_view_all_features only the pages they own
                "created_by": str(row.owned_by_id),
            },
        )

    def evaluate(self, rows: list[Row], workspace_id: str) -> Iterator[Document]:
        """Upserts for visible rows, deletions for hidden ones (rows that cannot be read are logged and skipped)."""
        links = self.links([row.id for row in rows])
        for row in rows:
            project_ids = links.get(str(row.id), [])
            if hidden_because(row, project_ids) is not None:
                yield self.removed(row.id, workspace_id, row.updated_at)
                continue
            document = self.build(row, lambda row, ids=project_ids: self.document(row, ids))
            if document is not None:
                yield document

    def _pages_of(self, stmt, workspace_id: str) -> Iterator[Document]:  # noqa: ANN001 - a Select
        batch: list[Row] = []
        for row in self.paged(stmt, [pages.c.id], ["id"]):
            batch.append(row)
            if len(batch) == self.page_size:
                yield from self.evaluate(batch, workspace_id)
                batch = []
        yield from self.evaluate(batch, workspace_id)

    # ------------------------------------------------------------------ Source protocol
    def _candidates(self, workspace_id: str, *columns) -> object:  # noqa: ANN002
        return select(*columns).where(
            pages.c.workspace_id == workspace_id, pages.c.deleted_at.is_(None), pages.c.archived_at.is_(None)
        )

    def iter_documents(self, workspace_id: str) -> Iterator[Document]:
        for document in self._pages_of(self._candidates(workspace_id, *_COLUMNS), workspace_id):
            if not document.deleted:
                yield document

    def visible_versions(self, workspace_id: str) -> Iterable[tuple[str, datetime]]:
        stmt = self._candidates(
            workspace_id, pages.c.id, pages.c.updated_at, pages.c.deleted_at, pages.c.archived_at, pages.c.is_global
        )
        batch: list[Row] = []
        for row in self.paged(stmt, [pages.c.id], ["id"], self.id_page_size):
            batch.append(row)
            if len(batch) == self.id_page_size:
                yield from self._visible(batch)
                batch = []
        yield from self._visible(batch)

    def _visible(self, rows: list[Row]) -> Iterator[tuple[str, datetime]]:
        links = self.links([row.id for row in rows if not row.is_global])
        for row in rows:
            if hidden_because(row, links.get(str(row.id), [])) is None:
                yield self.document_id(row.id), row.updated_at

    def changed_documents(self, workspace_id: str, marks: Marks, observed: Observed) -> Iterator[Document]:
        touched: set[str] = set()
        for row in self.scan_changed(
            select(project_pages.c.id, project_pages.c.updated_at, project_pages.c.page_id).where(
                project_pages.c.workspace_id == workspace_id
            ),
            project_pages,
            marks["project_pages"],
            observed["project_pages"],
        ):
            touched.add(row.page_id)
        changed_projects = self.changed_ids(projects, workspace_id, marks, observed)
        for batch in chunked(changed_projects, 500):
            with self.engine.connect() as connection:
                touched.update(connection.scalars(select(project_pages.c.page_id).where(project_pages.c.project_id.in_(batch))))
        emitted: set[str] = set()
        batch_rows: list[Row] = []
        content = select(*_COLUMNS).where(pages.c.workspace_id == workspace_id)
        for row in self.scan_changed(content, pages, marks["pages"], observed["pages"]):
            emitted.add(row.id)
            batch_rows.append(row)
            if len(batch_rows) == self.page_size:
                yield from self.evaluate(batch_rows, workspace_id)
                batch_rows = []
        yield from self.evaluate(batch_rows, workspace_id)
        remaining = [page_id for page_id in touched if page_id not in emitted]
        for ids in chunked(sorted(remaining), 500):
            yield from self._pages_of(content.where(and_(pages.c.id.in_(ids))), workspace_id)
