"""Fencing tokens and the database's clock: what keeps a writer that lost its lease from writing anything.

A lease (:mod:`pi_framework.sync.leases`) is taken with a *fencing token*, drawn from one counter in the PI
database, so every acquire gets a token larger than any before it, whoever takes it. Every write of the holder
carries the token:

* the ledger commit checks, in its own transaction, that the lease still has this token (:func:`holds`), with
  the lease row locked on PostgreSQL, so a successor cannot take over between the check and the commit;
* every sink write is conditional on it: a chunk stored with a larger version is never replaced or deleted by a
  smaller one (OpenSearch external versioning, a version-guarded upsert in the embedded sink).

So a writer that stalls past its lease (a long GC pause, a slow sink, ``SIGSTOP``) and wakes after a newer
writer went through cannot put its older version back, and learns it at its next commit. Writers without a lease
(global content) take a fresh version from the same counter per run (:func:`next_token`).

Tokens start from the clock in microseconds (and then only grow), so a new PI database next to an index
written by an older one still writes versions above the index's.

Lease expiry is computed by the database (:func:`clock`), never by a worker: a worker whose clock runs ahead
would otherwise take a lease its holder had just renewed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from pi_framework.db.models import FenceCounter, Lease

_COUNTER = "fence"


class LeaseLost(RuntimeError):
    """The lease expired and another holder took it (its token changed): stop writing at once."""


@dataclass(frozen=True)
class Fence:
    """A lease as held by one writer: the lease's name, the holder and the token it was taken with."""

    name: str
    holder: str
    token: int


def clock(session: Session, offset_seconds: float = 0.0) -> Any:
    """The database's current time plus *offset_seconds*, as an SQL expression comparable with stored datetimes.

    PostgreSQL: ``now() + interval``. SQLite (one machine, so one clock, but still computed in SQL for one rule):
    ``strftime`` in the text format SQLAlchemy stores datetimes in, so the strings compare in time order.
    """
    if session.get_bind().dialect.name == "postgresql":
        return func.now() + timedelta(seconds=offset_seconds)
    return func.strftime("%Y-%m-%d %H:%M:%f000", "now", f"{offset_seconds:+.6f} seconds")


def next_token(session: Session) -> int:
    """A new fencing token: larger than every token handed out before (in this transaction's commit order)."""
    floor = time.time_ns() // 1000
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(insert(FenceCounter).values(name=_COUNTER, value=0).on_conflict_do_nothing(index_elements=["name"]))
    larger = func.greatest if dialect == "postgresql" else func.max
    return int(
        session.execute(
            update(FenceCounter)
            .where(FenceCounter.name == _COUNTER)
            .values(value=larger(FenceCounter.value + 1, floor))
            .returning(FenceCounter.value)
        ).scalar_one()
    )


def holds(session: Session, fence: Fence, lock: bool = False) -> bool:
    """Whether *fence* still holds its lease (nobody acquired it since). With *lock*, the lease row stays locked
    until the transaction ends (PostgreSQL), so no one can take the lease before this transaction commits."""
    query = select(Lease.token).where(Lease.name == fence.name, Lease.holder == fence.holder, Lease.token == fence.token)
    if lock:
        query = query.with_for_update()
    return session.execute(query).first() is not None


def require(session: Session, fence: Fence | None, lock: bool = True) -> None:
    """Raise :class:`LeaseLost` unless *fence* (when given) still holds its lease; see :func:`holds`."""
    if fence is not None and not holds(session, fence, lock):
        raise LeaseLost(f"lease {fence.name} (token {fence.token}) is no longer held by {fence.holder}")
