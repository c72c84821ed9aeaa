"""Index generations in the PI database: which storage search reads, which one is being built, what is left to copy.

A generation is the sinks' storage for one embedding model (``PI_EMBEDDER`` + ``PI_EMBEDDING_MODEL``). Changing the
model starts a new one beside the live one (:func:`start`); it goes live in one transaction (:func:`swap`) once every
scope is copied, and the replaced one is dropped later (:func:`due_for_drop`). The process-side use of this state is
in :mod:`pi_framework.runtime`, the building in :mod:`pi_framework.sync.generations`.

Every time here is the database's (:func:`~pi_framework.db.fencing.clock`), never a worker's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pi_framework.db import Database
from pi_framework.db.fencing import clock
from pi_framework.db.models import GenerationScope, IndexedDocument, IndexGeneration

LIVE, BUILDING, RETIRED, DROPPED = "live", "building", "retired", "dropped"
PENDING, DONE = "pending", "done"
#: the scope of the chunks without a workspace (documentation)
GLOBAL_SCOPE = ""


@dataclass(frozen=True)
class Generation:
    name: str
    embedder: str
    model: str
    storage: str
    status: str
    created_at: datetime | None = None

    @property
    def model_key(self) -> tuple[str, str]:
        return (self.embedder, self.model)

    @classmethod
    def of(cls, row: IndexGeneration) -> Generation:
        return cls(row.name, row.embedder, row.model, row.storage, row.status, row.created_at)


@dataclass(frozen=True)
class Snapshot:
    """The generations a process reads and writes: ``live`` (never ``None`` once bootstrapped) and ``building``."""

    live: Generation
    building: Generation | None = None


@dataclass(frozen=True)
class Progress:
    generation: Generation
    scopes_done: int
    scopes_total: int
    chunks: int
    error: str | None = None


def _generation(session: Session, status: str) -> Generation | None:
    row = session.scalars(select(IndexGeneration).where(IndexGeneration.status == status)).first()
    return None if row is None else Generation.of(row)


def snapshot(database: Database, embedder: str, model: str) -> Snapshot:
    """The live and building generations; the first call on a new PI database records the first generation, on the
    sinks' own storage names, for (*embedder*, *model*)."""
    with database.session() as session:
        live, building = _generation(session, LIVE), _generation(session, BUILDING)
    if live is None:
        try:
            with database.session() as session:
                session.execute(
                    insert(IndexGeneration).values(
                        name="g1", number=1, embedder=embedder, model=model, storage="", status=LIVE, live_at=clock(session)
                    )
                )
        except IntegrityError:  # another process bootstrapped at the same time
            pass
        with database.session() as session:
            live = _generation(session, LIVE)
        assert live is not None
    return Snapshot(live, building)


def start(database: Database, embedder: str, model: str) -> Generation:
    """A new building generation for (*embedder*, *model*), with a pending scope per workspace the ledger holds
    documents of (and the global scope). A building generation of another model is abandoned (retired); one of this model
    (another pass started it meanwhile) is returned as it is: two starts at once run one after the other."""
    with database.session() as session:
        # a write to the live row first: it takes SQLite's write lock and PostgreSQL's row lock, so a concurrent start
        # waits here until this one commits, and its next statements (read committed) then see this one's row
        session.execute(update(IndexGeneration).where(IndexGeneration.status == LIVE).values(status=LIVE))
        session.execute(
            update(IndexGeneration)
            .where(IndexGeneration.status == BUILDING, or_(IndexGeneration.embedder != embedder, IndexGeneration.model != model))
            .values(status=RETIRED, retired_at=clock(session))
        )
        current = session.scalars(select(IndexGeneration).where(IndexGeneration.status == BUILDING)).first()
        if current is not None:
            return Generation.of(current)
        number = (session.scalar(select(func.max(IndexGeneration.number))) or 0) + 1
        name = f"g{number}"
        session.execute(
            insert(IndexGeneration).values(
                name=name, number=number, embedder=embedder, model=model, storage=name, status=BUILDING, created_at=clock(session)
            )
        )
        workspaces = session.scalars(select(IndexedDocument.workspace_id).distinct())
        scopes = sorted({workspace or GLOBAL_SCOPE for workspace in workspaces} | {GLOBAL_SCOPE})
        session.execute(insert(GenerationScope), [{"generation": name, "scope": scope, "status": PENDING} for scope in scopes])
        row = session.get(IndexGeneration, name)
        assert row is not None
        return Generation.of(row)


def invalidate(database: Database, generation: str, scopes: Iterable[str] | None) -> bool:
    """Send *scopes* (``None``: every scope) of the building *generation* back to ``pending``: a write to it failed, so
    its copy is redone. ``False`` when *generation* is no longer building (it went live: the failure is a real one)."""
    with database.session() as session:
        row = session.get(IndexGeneration, generation, with_for_update=True)
        if row is None or row.status != BUILDING:
            return row is not None and row.status != LIVE  # a retired generation's failures do not matter
        query = update(GenerationScope).where(GenerationScope.generation == generation)
        names = None if scopes is None else sorted({scope or GLOBAL_SCOPE for scope in scopes})
        if names is not None:
            query = query.where(GenerationScope.scope.in_(names))
        session.execute(query.values(status=PENDING, epoch=GenerationScope.epoch + 1))
        if names is not None:  # a workspace first written during the build has no scope yet
            known = set(
                session.scalars(
                    select(GenerationScope.scope).where(
                        GenerationScope.generation == generation, GenerationScope.scope.in_(names)
                    )
                )
            )
            if new := [scope for scope in names if scope not in known]:
                session.execute(
                    insert(GenerationScope),
                    [{"generation": generation, "scope": scope, "status": PENDING, "epoch": 1} for scope in new],
                )
    return True


def abandon(database: Database, generation: str) -> None:
    """Retire the building *generation* unfinished (the settings no longer ask for its model)."""
    with database.session() as session:
        session.execute(
            update(IndexGeneration)
            .where(IndexGeneration.name == generation, IndexGeneration.status == BUILDING)
            .values(status=RETIRED, retired_at=clock(session))
        )


def note_error(database: Database, generation: str, error: str | None) -> None:
    """Record (or with ``None`` clear) the last copy failure of *generation*, shown by ``pi status``."""
    with database.session() as session:
        session.execute(update(IndexGeneration).where(IndexGeneration.name == generation).values(error=error and error[:2000]))


def pending_scopes(database: Database, generation: str) -> list[tuple[str, int]]:
    """``(scope, epoch)`` of the scopes of *generation* still to copy."""
    with database.session() as session:
        rows = session.execute(
            select(GenerationScope.scope, GenerationScope.epoch)
            .where(GenerationScope.generation == generation, GenerationScope.status == PENDING)
            .order_by(GenerationScope.scope)
        )
        return [(scope, epoch) for scope, epoch in rows]


def finish_scope(database: Database, generation: str, scope: str, epoch: int, chunks: int) -> bool:
    """Mark *scope* copied, unless it was sent back to pending since the copy read *epoch* (then ``False``)."""
    with database.session() as session:
        return bool(
            session.execute(
                update(GenerationScope)
                .where(GenerationScope.generation == generation, GenerationScope.scope == scope, GenerationScope.epoch == epoch)
                .values(status=DONE, chunks=chunks)
            ).rowcount
        )


def swap(database: Database, generation: str, settle_seconds: float) -> bool:
    """Make the building *generation* live and retire the live one, in one transaction, when every scope is copied and
    it was started at least *settle_seconds* ago (every process has seen it by then); ``False`` otherwise."""
    with database.session() as session:
        row = session.get(IndexGeneration, generation, with_for_update=True)
        if row is None or row.status != BUILDING:
            return False
        old_enough = _settled(session, generation, settle_seconds)
        pending = session.scalar(
            select(func.count()).where(GenerationScope.generation == generation, GenerationScope.status == PENDING)
        )
        if not old_enough or pending:
            return False
        session.execute(
            update(IndexGeneration).where(IndexGeneration.status == LIVE).values(status=RETIRED, retired_at=clock(session))
        )
        session.execute(
            update(IndexGeneration).where(IndexGeneration.name == generation).values(status=LIVE, live_at=clock(session))
        )
        return True


def copy_may_start(database: Database, generation: str, settle_seconds: float) -> bool:
    """Whether *settle_seconds* passed since *generation* started: every process writes it by then (see
    :func:`pi_framework.runtime.write_sinks`), so what the copy reads is all it must carry over."""
    with database.session() as session:
        return _settled(session, generation, settle_seconds)


def _settled(session: Session, generation: str, settle_seconds: float) -> bool:
    """Whether *generation* started at least *settle_seconds* ago (by the database's clock)."""
    started_before = IndexGeneration.created_at <= clock(session, -settle_seconds)
    return bool(session.scalar(select(func.count()).where(IndexGeneration.name == generation, started_before)))


def due_for_drop(database: Database, grace_seconds: float) -> list[Generation]:
    """Retired generations replaced more than *grace_seconds* ago (no process reads or writes them any more)."""
    with database.session() as session:
        rows = session.scalars(
            select(IndexGeneration).where(
                IndexGeneration.status == RETIRED, IndexGeneration.retired_at <= clock(session, -grace_seconds)
            )
        )
        return [Generation.of(row) for row in rows]


def mark_dropped(database: Database, generation: str) -> None:
    with database.session() as session:
        session.execute(update(IndexGeneration).where(IndexGeneration.name == generation).values(status=DROPPED))


def progress(database: Database) -> list[Progress]:
    """Every generation not dropped, live first, with its copy progress (``pi status``)."""
    with database.session() as session:
        rows = session.scalars(
            select(IndexGeneration).where(IndexGeneration.status != DROPPED).order_by(IndexGeneration.number)
        ).all()
        counts = {
            (name, status): (scopes, chunks or 0)
            for name, status, scopes, chunks in session.execute(
                select(
                    GenerationScope.generation, GenerationScope.status, func.count(), func.sum(GenerationScope.chunks)
                ).group_by(GenerationScope.generation, GenerationScope.status)
            )
        }
    order = {LIVE: 0, BUILDING: 1, RETIRED: 2}
    result = []
    for row in sorted(rows, key=lambda row: (order.get(row.status, 3), row.number)):
        done, chunks = counts.get((row.name, DONE), (0, 0))
        pending, _ = counts.get((row.name, PENDING), (0, 0))
        result.append(Progress(Generation.of(row), done, done + pending, chunks, row.error))
    return result
