"""What the sync machinery remembers per workspace in ``sync_states``: cursors, reconcile stamps, markers.

Rows are keyed ``(source, scope)``: a source's cursor is ``(source name, workspace)``; the machinery's own
rows use names no source may take (:data:`~pi_framework.contract.names.RESERVED`), and the registry refuses a source named like one
(:func:`pi_framework.contract.contributions.source_name_problem`).

Rows that are not a source's cursor belong to one owner each, so no owner can collide with another:

* a source: its own name (never contains ``:``, never one of the names below);
* the sync machinery: :data:`~pi_framework.contract.names.RESERVED`, and names with ``:`` of its own (``global-scan:<source>``);
* a plugin: ``plugin:<plugin name>`` (any scope it likes; a name with ``:`` is never a source's);
* a plugin's rows from before that rule keep their names, reserved by the plugin (``register_state_names``) like the
  machinery's. They are not renamed: a worker of the previous version still running during a rolling upgrade
  would write the old name again after the rename (a billing plugin would lose a downgrade marker, the workspace
  then never re-onboarded). Refusing a source named like them protects them just as well.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from pi_framework import runtime
from pi_framework.contract.names import PENDING, PLUGIN_PREFIX, RECONCILE, RESERVED, RETRIES
from pi_framework.db import get_database
from pi_framework.db.models import SyncState, utcnow

__all__ = ["PENDING", "PLUGIN_PREFIX", "RECONCILE", "RESERVED", "RETRIES", "PluginState", "StateRow"]



def load(source: str, workspace_id: str) -> dict[str, Any] | None:
    with get_database().session() as session:
        state = session.get(SyncState, (source, workspace_id))
        return dict(state.cursor) if state is not None else None


def save(source: str, workspace_id: str, cursor: dict[str, Any]) -> None:
    with get_database().session() as session:
        session.merge(SyncState(source=source, scope=workspace_id, cursor=cursor, updated_at=utcnow()))


def remove(source: str, workspace_id: str) -> None:
    with get_database().session() as session:
        session.execute(delete(SyncState).where(SyncState.source == source, SyncState.scope == workspace_id))


def all_of(source: str) -> dict[str, dict[str, Any]]:
    """``workspace -> value`` of every row named *source* (one query)."""
    with get_database().session() as session:
        return {state.scope: dict(state.cursor) for state in session.scalars(select(SyncState).where(SyncState.source == source))}


def forget(workspace_id: str, sources: Iterable[str]) -> None:
    """Drop the workspace's cursors of *sources* and every row of the machinery's own."""
    names = [*sources, *RESERVED]
    with get_database().session() as session:
        session.execute(delete(SyncState).where(SyncState.scope == workspace_id, SyncState.source.in_(names)))


def reconciled(workspace_id: str) -> None:
    save(RECONCILE, workspace_id, {"at": utcnow().isoformat()})


def reconcile_due(workspace_id: str, interval: int, stamps: dict[str, dict[str, Any]] | None = None) -> bool:
    """Whether *interval* seconds passed since the workspace's last reconcile (*stamps*: :func:`all_of` preloaded)."""
    stamp = stamps.get(workspace_id) if stamps is not None else load(RECONCILE, workspace_id)
    last = datetime.fromisoformat(stamp["at"]) if stamp and stamp.get("at") else None
    return last is None or utcnow() - last >= timedelta(seconds=interval)


def parked(workspace_id: str) -> int:
    """Documents of *workspace_id* the live sync refused more than ``PI_DOCUMENT_RETRIES`` times and still retries."""
    return sum("retry_at" in entry for entry in (load(RETRIES, workspace_id) or {}).values())


def flag(workspace_id: str, path: str = "live sync") -> None:
    """Mark *workspace_id* as possibly behind: every tick sends it a live sync until one finds it caught up.

    Race-free (one ``INSERT … ON CONFLICT``): a new marker records since when; an existing one keeps its ``since``
    and only gets a new ``updated_at`` — the version :func:`clear_marker` checks, so a sync never clears a flag
    raised after it looked.
    """
    now = utcnow()
    row = {"source": PENDING, "scope": workspace_id, "cursor": {"since": now.isoformat(), "pending": None, "path": path}}
    with get_database().session() as session:
        statement = _insert(session)(SyncState).values(**row, updated_at=now)
        session.execute(statement.on_conflict_do_update(index_elements=["source", "scope"], set_={"updated_at": now}))


def marker(workspace_id: str) -> tuple[dict[str, Any], datetime] | None:
    """The pending-work marker of *workspace_id* and its version (``updated_at``), or ``None``."""
    with get_database().session() as session:
        row = session.get(SyncState, (PENDING, workspace_id))
        return (dict(row.cursor), row.updated_at) if row is not None else None


def clear_marker(workspace_id: str, version: datetime) -> bool:
    """Remove the marker if nobody flagged the workspace again since *version* was read; ``True`` if removed."""
    with get_database().session() as session:
        return bool(
            session.execute(
                delete(SyncState).where(
                    SyncState.source == PENDING, SyncState.scope == workspace_id, SyncState.updated_at == version
                )
            ).rowcount
        )


@dataclass(frozen=True)
class StateRow:
    """One row of a plugin's state: its scope, its value and when it was last written."""

    scope: str
    value: dict[str, Any]
    updated_at: datetime


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time stored is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _insert(session: Session) -> Any:
    """The dialect's ``INSERT`` (``ON CONFLICT`` clauses differ in import only)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


class PluginState:
    """A plugin's own rows in ``sync_states``: JSON objects by scope, never a source's cursor nor the core's rows.

    ``PluginState("my_plugin")`` keeps them under ``plugin:my_plugin``; ``PluginState.reserved("plans")`` under a name
    a loaded plugin reserved with ``register_state_names`` (rows it kept before ``plugin:<name>`` existed), checked on
    every use: any other name raises :class:`LookupError`, so a plugin cannot touch rows of the core or of a source.
    Rows live in this process's PI database (:func:`~pi_framework.db.get_database`).
    """

    def __init__(self, plugin: str) -> None:
        self.name, self._reserved = f"{PLUGIN_PREFIX}{plugin}", False

    @classmethod
    def reserved(cls, name: str) -> PluginState:
        """The rows under *name*, a ``register_state_names`` name (checked when used: a module-level instance is made
        while its plugin is imported, before the registry exists)."""
        state = cls(name)
        state.name, state._reserved = name, True
        return state

    def _checked(self) -> str:
        if self._reserved and self.name not in runtime.get_registry().reserved_state_names:
            raise LookupError(
                f"sync_states name {self.name!r} is not reserved by a loaded plugin (register_state_names); "
                f"a plugin's own rows go under PluginState('<plugin>')"
            )
        return self.name

    def load(self, scope: str) -> dict[str, Any] | None:
        return load(self._checked(), scope)

    def save(self, scope: str, value: dict[str, Any]) -> None:
        save(self._checked(), scope, value)

    def remove(self, scope: str) -> None:
        remove(self._checked(), scope)

    def all(self) -> dict[str, dict[str, Any]]:
        """``scope -> value`` of every row."""
        return all_of(self._checked())

    def rows(self) -> list[StateRow]:
        """Every row with when it was written, by scope."""
        name = self._checked()
        with get_database().session() as session:
            query = select(SyncState).where(SyncState.source == name).order_by(SyncState.scope)
            return [StateRow(row.scope, dict(row.cursor), _aware(row.updated_at)) for row in session.scalars(query)]

    def update(self, scope: str, change: Callable[[dict[str, Any] | None], dict[str, Any]]) -> dict[str, Any]:
        """Replace the row of *scope* with ``change(current value or None)`` in one transaction; returns the new value.

        The row is locked from the read to the write (created first if missing, so even a first write is locked on
        PostgreSQL; SQLite has one writer at a time), so two concurrent updates never lose one another's change.
        """
        name = self._checked()
        with get_database().session() as session:
            insert = _insert(session)
            blank = insert(SyncState).values(source=name, scope=scope, cursor={}, updated_at=utcnow())
            created = session.execute(blank.on_conflict_do_nothing(index_elements=["source", "scope"])).rowcount == 1
            key = (SyncState.source == name, SyncState.scope == scope)
            row = session.scalars(select(SyncState).where(*key).with_for_update()).one()
            row.cursor = value = change(None if created else dict(row.cursor))
            row.updated_at = utcnow()
            return value
