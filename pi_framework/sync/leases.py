"""Expiring named leases with a holder token: at most one writer per workspace, and a dead one is replaced fast.

A lease is a row ``(name, holder, expires_at)``. Taking it succeeds when nobody holds it or the holder
let it expire; only the holder renews or releases it (every statement says ``WHERE holder = me``), so a
task that outlived its lease cannot release or extend its successor's. Leases are short
(``PI_LEASE_SECONDS``) and renewed while work progresses: a killed holder's workspace is free again
within one lease time, not after a job timeout.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from pi_framework.db import Database
from pi_framework.db.models import Lease, utcnow


class LeaseLost(RuntimeError):
    """The lease expired and another holder took it: stop writing at once."""


def workspace_lease(workspace_id: str) -> str:
    """The lease of whatever writes *workspace_id*'s index (live sync or vectorization)."""
    return f"live:{workspace_id}"


def queued_marker(workspace_id: str) -> str:
    """The lease standing for a live sync of *workspace_id* that was sent and has not started."""
    return f"queued:{workspace_id}"


class Leases:
    def __init__(self, database: Database, seconds: float) -> None:
        self.database = database
        self.seconds = seconds

    def _expiry(self, seconds: float | None = None) -> datetime:
        return utcnow() + timedelta(seconds=self.seconds if seconds is None else seconds)

    def acquire(self, name: str, holder: str, seconds: float | None = None) -> bool:
        """Take *name* for *holder* (again, if it already holds it); ``False`` while someone else holds it."""
        now, expires = utcnow(), self._expiry(seconds)
        with self.database.session() as session:
            taken = session.execute(
                update(Lease)
                .where(Lease.name == name, (Lease.expires_at < now) | (Lease.holder == holder))
                .values(holder=holder, expires_at=expires)
            ).rowcount
        if taken:
            return True
        try:
            with self.database.session() as session:
                session.execute(insert(Lease).values(name=name, holder=holder, expires_at=expires))
        except IntegrityError:
            return False
        return True

    def wait(self, name: str, holder: str, timeout: float, poll: float = 0.5) -> bool:
        """:meth:`acquire`, retried until *timeout* seconds passed (a holder finishing, or its lease expiring)."""
        deadline = time.monotonic() + timeout
        while not self.acquire(name, holder):
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)
        return True

    def renew(self, name: str, holder: str) -> None:
        """Extend the lease; raises :class:`LeaseLost` when *holder* no longer holds it."""
        with self.database.session() as session:
            renewed = session.execute(
                update(Lease).where(Lease.name == name, Lease.holder == holder).values(expires_at=self._expiry())
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
        query = select(Lease.name, Lease.holder).where(Lease.expires_at >= utcnow())
        if names is not None:
            query = query.where(Lease.name.in_(names))
        with self.database.session() as session:
            return dict(session.execute(query).all())
