"""Expiring named leases with a holder token: at most one writer per workspace, and a dead one is replaced fast.

A lease is a row ``(name, holder, expires_at, token)``. Taking it succeeds when nobody holds it or the holder
let it expire; only the holder renews or releases it (every statement says ``WHERE holder = me``), so a
task that outlived its lease cannot release or extend its successor's. Leases are short
(``PI_LEASE_SECONDS``) and renewed while work progresses: a killed holder's workspace is free again
within one lease time, not after a job timeout.
"""

from __future__ import annotations

import time

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from pi_framework.db import Database
from pi_framework.db.fencing import Fence, LeaseLost, clock, next_token
from pi_framework.db.models import Lease

__all__ = ["Fence", "LeaseLost", "Leases", "queued_marker", "workspace_lease"]


def workspace_lease(workspace_id: str) -> str:
    """The lease of whatever writes *workspace_id*'s index (live sync or vectorization)."""
    return f"live:{workspace_id}"


def queued_marker(workspace_id: str) -> str:
    """The lease standing for a live sync of *workspace_id* that was sent and has not started."""
    return f"queued:{workspace_id}"


class Leases:
    """Every time here is the database's (:func:`~pi_framework.db.fencing.clock`), never the worker's."""

    def __init__(self, database: Database, seconds: float) -> None:
        self.database = database
        self.seconds = seconds

    def acquire(self, name: str, holder: str, seconds: float | None = None) -> bool:
        """Take *name* for *holder* (again, if it already holds it); ``False`` while someone else holds it.

        For a lease that guards writes use :meth:`fence`, which also hands out a fencing token."""
        return self._take(name, holder, seconds, fenced=False) is not None

    def fence(self, name: str, holder: str, seconds: float | None = None) -> Fence | None:
        """:meth:`acquire` with a new fencing token, larger than any before (see :mod:`pi_framework.db.fencing`):
        the :class:`~pi_framework.db.fencing.Fence` every write of the holder carries; ``None`` while held by another."""
        return self._take(name, holder, seconds, fenced=True)

    def _take(self, name: str, holder: str, seconds: float | None, fenced: bool) -> Fence | None:
        seconds = self.seconds if seconds is None else seconds
        with self.database.session() as session:
            values = {"holder": holder, "expires_at": clock(session, seconds), "token": next_token(session) if fenced else 0}
            taken = session.execute(
                update(Lease).where(Lease.name == name, (Lease.expires_at < clock(session)) | (Lease.holder == holder)).values(**values)
            ).rowcount
        if taken:
            return Fence(name, holder, values["token"])
        try:
            with self.database.session() as session:
                values = {"holder": holder, "expires_at": clock(session, seconds), "token": next_token(session) if fenced else 0}
                session.execute(insert(Lease).values(name=name, **values))
        except IntegrityError:
            return None
        return Fence(name, holder, values["token"])

    def seize(self, name: str, holder: str) -> Fence:
        """Take *name* whoever holds it, with a new token: every write of the previous holder is refused from now on
        (a downgrade removing a workspace while a sync of it is in flight)."""
        with self.database.session() as session:
            token = next_token(session)
            values = {"holder": holder, "expires_at": clock(session, self.seconds), "token": token}
            if not session.execute(update(Lease).where(Lease.name == name).values(**values)).rowcount:
                session.execute(insert(Lease).values(name=name, **values))
        return Fence(name, holder, token)

    def wait(self, name: str, holder: str, timeout: float, poll: float = 0.5) -> Fence | None:
        """:meth:`fence`, retried until *timeout* seconds passed (a holder finishing, or its lease expiring)."""
        deadline = time.monotonic() + timeout
        while (fence := self.fence(name, holder)) is None:
            if time.monotonic() >= deadline:
                return None
            time.sleep(poll)
        return fence

    def renew(self, name: str, holder: str) -> None:
        """Extend the lease; raises :class:`LeaseLost` when *holder* no longer holds it."""
        with self.database.session() as session:
            renewed = session.execute(
                update(Lease).where(Lease.name == name, Lease.holder == holder).values(expires_at=clock(session, self.seconds))
            ).rowcount
        if not renewed:
            raise LeaseLost(f"lease {name} is no longer held by {holder}")

    def release(self, name: str, holder: str) -> None:
        with self.database.session() as session:
            session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))

    def clear(self, name: str) -> None:
        """Remove *name* whoever holds it (a queued marker consumed by the task it stood for)."""
        with self.database.session() as session:
            session.execute(delete(Lease).where(Lease.name == name))

    def held(self, names: list[str] | None = None) -> dict[str, str]:
        """``name -> holder`` of the unexpired leases (all of them, or among *names*), in one query."""
        with self.database.session() as session:
            query = select(Lease.name, Lease.holder).where(Lease.expires_at >= clock(session))
            if names is not None:
                query = query.where(Lease.name.in_(names))
            return dict(session.execute(query).all())
