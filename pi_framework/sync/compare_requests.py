"""Requests for a full compare: the flags a way of *finding* changes raises when the cursor may not see them.

* ``pending-work`` markers (:func:`pi_framework.sync.state.flag`'s rows): the workspace is a candidate for the next
  live sync, exactly as the tick flags it;
* ``changefeed:compare`` rows (scope: the workspace): a change the cursor cannot see (Plane's bulk paths leave
  ``updated_at`` alone, hard deletes, late commits, ``TRUNCATE``) happened, so the next live sync also compares every
  visible id and version with the ledger (the reconcile). A row carries its version (``updated_at``) like a
  marker: the live sync removes only the version it read before comparing, never one written while it ran.

The change feed (:mod:`pi_framework.changefeed`) raises them; the live sync consumes them. Every name has a ``:``: rows
of the sync machinery, never a source's cursor (see :mod:`pi_framework.sync.state`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from pi_framework.batching import chunked
from pi_framework.db import get_database
from pi_framework.db.models import SyncState, utcnow
from pi_framework.sync import state

COMPARE = "changefeed:compare"
#: the ``path`` of a marker the change feed raised
FEED_PATH = "change feed"


def _insert(session: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def flag_for_compare(workspace_ids: Iterable[str], path: str = FEED_PATH, compare: bool = True) -> int:
    """Flag every workspace and (*compare*) request a compare of each, in one transaction per 500 (committed when this
    returns).

    Same upsert as :func:`pi_framework.sync.state.flag`: a new marker records since when, an existing one only gets
    a new version, so a live sync that read the old one does not clear it."""
    count = 0
    for batch in chunked(sorted(set(workspace_ids)), 500):
        now = utcnow()
        with get_database().session() as session:
            insert = _insert(session)
            markers = [
                {
                    "source": state.PENDING,
                    "scope": ws,
                    "cursor": {"since": now.isoformat(), "pending": None, "path": path},
                    "updated_at": now,
                }
                for ws in batch
            ]
            statement = insert(SyncState).values(markers)
            session.execute(statement.on_conflict_do_update(index_elements=["source", "scope"], set_={"updated_at": now}))
            if not compare:
                count += len(batch)
                continue
            requests = [{"source": COMPARE, "scope": ws, "cursor": {"at": now.isoformat()}, "updated_at": now} for ws in batch]
            statement = insert(SyncState).values(requests)
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=["source", "scope"], set_={"updated_at": now, "cursor": statement.excluded.cursor}
                )
            )
        count += len(batch)
    return count


def compare_requested(workspace_id: str) -> datetime | None:
    """The version of the workspace's compare request, or ``None`` when the feed asked for none."""
    with get_database().session() as session:
        row = session.get(SyncState, (COMPARE, workspace_id))
        return row.updated_at if row is not None else None


def clear_compare(workspace_id: str, version: datetime) -> bool:
    """Remove the request read as *version* unless the feed wrote it again since; ``True`` if removed."""
    with get_database().session() as session:
        return bool(
            session.execute(
                delete(SyncState).where(
                    SyncState.source == COMPARE, SyncState.scope == workspace_id, SyncState.updated_at == version
                )
            ).rowcount
        )


def compare_requests() -> set[str]:
    with get_database().session() as session:
        return set(session.scalars(select(SyncState.scope).where(SyncState.source == COMPARE)))
