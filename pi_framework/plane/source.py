"""What the Plane sources (work items, pages, …) share: keyset paging, watermark scans, the cursor.

Every query is SQLAlchemy Core that PostgreSQL and SQLite both accept, runs in its own short
connection (no transaction held open while documents are embedded) and reads at most one page of
rows, so a workspace is never loaded into memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from loguru import logger
from sqlalchemy import ColumnElement, Engine, Row, Select, Table, and_, func, or_, select, type_coerce

from pi_framework.batching import chunked  # noqa: F401 - part of what Plane sources use (exported by the API)
from pi_framework.contract.contributions import Changes
from pi_framework.contract.documents import Document
from pi_framework.plane.db import plane_engine
from pi_framework.plane.schema import UTCDateTime, metadata
from pi_framework.plane.watermark import Watermark
from pi_framework.settings import Settings

Marks = dict[str, Watermark]
Observed = dict[str, dict[str, datetime]]


def _after(columns: Sequence[ColumnElement], values: Sequence[Any]) -> ColumnElement[bool]:
    """``(c1, c2, ...) > (v1, v2, ...)`` written without row values (portable)."""
    head = columns[0] > values[0]
    if len(columns) == 1:
        return head
    return or_(head, and_(columns[0] == values[0], _after(columns[1:], values[1:])))


def _workspace_of_row(row: Mapping[str, Any]) -> list[str] | None:
    """A Plane row's ``workspace_id`` (``None`` when the row does not carry it: a key-only DELETE)."""
    workspace_id = row.get("workspace_id")
    return [workspace_id] if isinstance(workspace_id, str) and workspace_id else None


class PlaneSource:
    """Base of a workspace-scoped source read from Plane's database.

    Subclasses name the tables they watch (``tracked``) and implement the three queries. The cursor
    is one :class:`Watermark` per tracked table. A tracked name is one of Plane's tables the core declares
    (:mod:`pi_framework.plane.schema`) or one of the subclass's own ``tables``: a plugin reading Plane tables the
    core does not know declares them itself (``Table`` objects on a ``MetaData`` of its own).
    """

    scope: Literal["workspace"] = "workspace"
    name: ClassVar[str]
    kind: ClassVar[str]
    tracked: ClassVar[tuple[str, ...]]
    #: Plane tables this source declares itself (looked up before the core's by :meth:`table`)
    tables: ClassVar[tuple[Table, ...]] = ()
    page_size: ClassVar[int] = 200
    id_page_size: ClassVar[int] = 5000
    #: the table whose rows are this source's documents (``<name>:<row id>``); default the first tracked one. The
    #: change feed maps a DELETE of it that carries only the key through the ledger (see :meth:`watched_tables`)
    document_table: ClassVar[str | None] = None

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.overlap = timedelta(seconds=settings.PI_SYNC_OVERLAP_SECONDS)

    @property
    def engine(self) -> Engine:
        return plane_engine(self.settings)

    def table(self, name: str) -> Table:
        """The tracked table *name*: one of the source's own ``tables``, else one of Plane's the core declares."""
        for table in self.tables:
            if table.name == name:
                return table
        try:
            return metadata.tables[name]
        except KeyError:
            raise KeyError(f"{self.name}: table {name!r} is neither one of the source's tables nor of Plane's core") from None

    def document_id(self, row_id: str) -> str:
        return f"{self.name}:{row_id}"

    # ------------------------------------------------------------------ the change feed
    def watched_tables(self) -> dict[str, Callable[[Mapping[str, Any]], Iterable[str] | None]]:
        """What the change feed (:mod:`pi_framework.changefeed`) watches for this source: every tracked table, each with
        how one of its rows maps to the workspaces whose documents it may change.

        A row is what logical replication sends: column name -> text value (``None``: NULL). Every Plane table
        tracked here has a ``workspace_id`` column, so the default reads it. ``None`` means "this row does not say":
        a DELETE carries only the key (replica identity default); the feed then finds the workspace in the ledger
        when the table is :attr:`document_table` (only an indexed document's delete matters), and ``pi changefeed
        setup`` gives the other watched tables ``REPLICA IDENTITY FULL`` so their deletes carry ``workspace_id``.
        Override it for a table whose rows name their workspace another way.
        """
        return {name: _workspace_of_row for name in self.tracked}

    def documents_table(self) -> str | None:
        return self.document_table or (self.tracked[0] if self.tracked else None)

    # ------------------------------------------------------------------ querying
    def db_now(self) -> datetime:
        """The Plane database's clock (watermarks never use a worker's clock)."""
        with self.engine.connect() as connection:
            return connection.execute(select(type_coerce(func.now(), UTCDateTime()))).scalar_one()

    def paged(
        self, stmt: Select, order: Sequence[ColumnElement], keys: Sequence[str], page_size: int | None = None
    ) -> Iterator[Row]:
        """Rows of *stmt* in keyset pages ordered by *order* (whose values are the row's *keys*; last unique)."""
        size = page_size or self.page_size
        last: list[Any] | None = None
        while True:
            page = stmt.order_by(*order).limit(size)
            if last is not None:
                page = page.where(_after(order, last))
            with self.engine.connect() as connection:
                rows = connection.execute(page).all()
            yield from rows
            if len(rows) < size:
                return
            last = [getattr(rows[-1], key) for key in keys]

    def scan_changed(self, stmt: Select, table: Any, mark: Watermark, observed: dict[str, datetime]) -> Iterator[Row]:
        """Rows of *stmt* (selecting *table*'s ``id`` and ``updated_at``) changed since *mark*.

        Everything read inside the window lands in *observed*, which the next cursor remembers.
        """
        lower = mark.lower_bound(self.overlap)
        if lower is not None:
            stmt = stmt.where(table.c.updated_at > lower)
        for row in self.paged(stmt, [table.c.updated_at, table.c.id], ["updated_at", "id"]):
            observed[row.id] = row.updated_at
            if mark.is_new(row.id, row.updated_at):
                yield row

    def changed_ids(self, table: Any, workspace_id: str, marks: Marks, observed: Observed) -> list[str]:
        """Ids of *table*'s rows of the workspace changed since the cursor (projects, states: small tables)."""
        stmt = select(table.c.id, table.c.updated_at).where(table.c.workspace_id == workspace_id)
        return [row.id for row in self.scan_changed(stmt, table, marks[table.name], observed[table.name])]

    def build(self, row: Row, make: Callable[[Row], Document | None]) -> Document | None:
        """``make(row)``, or ``None`` with a logged reason when the row cannot become a document."""
        try:
            return make(row)
        except Exception as exc:  # noqa: BLE001 - one bad row must not fail the batch
            logger.warning("{}: skipped {}: {}: {}", self.name, self.document_id(row.id), type(exc).__name__, exc)
            return None

    # ------------------------------------------------------------------ the Source protocol
    def changes(self, workspace_id: str, cursor: dict[str, Any] | None) -> Changes:
        start = self.db_now()
        if cursor is None:
            fresh = self.fresh_cursor(workspace_id, start)
            return Changes(iter(self.iter_documents(workspace_id)), cursor=lambda: fresh)
        marks = {table: Watermark.load(cursor.get(table)) for table in self.tracked}
        observed: Observed = {table: {} for table in self.tracked}

        def next_cursor() -> dict[str, Any]:
            return {table: marks[table].advanced(start, observed[table], self.overlap).dump() for table in self.tracked}

        return Changes(self.changed_documents(workspace_id, marks, observed), cursor=next_cursor)

    def fresh_cursor(self, workspace_id: str, start: datetime) -> dict[str, Any]:
        """The cursor of a full pass that starts at *start*.

        Rows inside the overlap window are recorded as seen *before* the pass reads them: one that
        changes afterwards has another ``updated_at`` and is picked up by the next scan, while the
        rest are not all re-read as changes (a workspace created minutes ago would otherwise look
        like a backlog of changes, and be left to stale recovery).
        """
        cursor = {}
        for name in self.tracked:
            table = self.table(name)
            observed: dict[str, datetime] = {}
            stmt = select(table.c.id, table.c.updated_at).where(table.c.workspace_id == workspace_id)
            for _ in self.scan_changed(stmt, table, Watermark(start), observed):
                pass
            cursor[name] = Watermark(start).advanced(start, observed, self.overlap).dump()
        return cursor

    def changed_workspaces(
        self, state: dict[str, Any] | None, cursors: Iterable[dict[str, Any]] = ()
    ) -> tuple[set[str] | None, dict[str, Any]]:
        """Workspaces with rows of the tracked tables changed since *state*, across all workspaces: ``(ids, next state)``.

        One keyset scan per tracked table over ``updated_at`` with the same overlap / late-commit / clock-skew
        rules as a workspace cursor (:class:`Watermark`), so a live-sync tick costs O(changes), not
        O(workspaces). With no state yet, the scan starts where the oldest workspace cursor of each table stands
        (every change some workspace has not taken yet is named; nothing else is); with no cursor either, at
        the database's clock now. Plane has no index on ``issues.updated_at``; see the README for the recommended one.
        """
        start = self.db_now()
        if state is None:
            cursors = list(cursors)
            state = {name: Watermark(self._oldest(cursors, name) or start).dump() for name in self.tracked}
        changed: set[str] = set()
        following = {}
        for name in self.tracked:
            table = self.table(name)
            mark, observed = Watermark.load(state.get(name)), {}
            stmt = select(table.c.id, table.c.updated_at, table.c.workspace_id)
            changed.update(row.workspace_id for row in self.scan_changed(stmt, table, mark, observed))
            following[name] = mark.advanced(start, observed, self.overlap).dump()
        return changed, following

    @staticmethod
    def _oldest(cursors: Iterable[dict[str, Any]], table: str) -> datetime | None:
        """The earliest watermark of *table* among workspace *cursors* (``None``: no cursor has one)."""
        marks = [Watermark.load(cursor.get(table)).at for cursor in cursors]
        return min((mark for mark in marks if mark is not None), default=None)

    def iter_documents(self, workspace_id: str) -> Iterable[Document]:
        raise NotImplementedError

    def changed_documents(self, workspace_id: str, marks: Marks, observed: Observed) -> Iterator[Document]:
        """Upserts and deletions (``deleted=True``) of every document touched by a change since *marks*."""
        raise NotImplementedError

    def visible_versions(self, workspace_id: str) -> Iterable[tuple[str, datetime]]:
        """``(document id, updated_at)`` of every visible document, streamed (reconcile and staleness)."""
        raise NotImplementedError

    def visible_metadata(self, workspace_id: str) -> Iterable[tuple[str, dict[str, Any]]] | None:
        """``(document id, metadata)`` of every visible document, without its text, streamed; ``None`` (the default):
        not offered. A source whose metadata can change while no ``updated_at`` moves (Plane's ``bulk_update`` of a work
        item's ``state_id``, a link row deleted outright) offers it: the reconcile compares it with the index's
        metadata and updates what differs in place (:func:`pi_framework.sync.metadata.stale_metadata`)."""
        return None

    def visible_ids(self, workspace_id: str) -> Iterable[str]:
        return (document_id for document_id, _ in self.visible_versions(workspace_id))

    def removed(self, row_id: str, workspace_id: str, updated_at: datetime | None = None) -> Document:
        return Document(
            id=self.document_id(row_id),
            source=self.name,
            kind=self.kind,
            workspace_id=workspace_id,
            updated_at=updated_at,
            deleted=True,
        )
