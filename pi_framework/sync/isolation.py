"""Run-time isolation of sources: a source that raises is skipped for the round, and the other sources go on.

A plugin that fails at load is dropped by the registry; this is the same at run time. In the live-sync tick (each
source's global change scan), in a live sync (measuring and applying each source's changes) and in a reconcile (each
source's comparison with the ledger), every call into a source goes through a guard (:class:`Guarded`): whatever the
source raises comes out as :class:`SourceFailed`, the round (:class:`Round`) skips that source from then on, and the
other sources' changes still flow. Nothing of a skipped source moves: its global watermark and its workspace cursor
stay, and a live sync that skipped one leaves the workspace flagged, so the next tick tries again.

Not the source's to swallow (:data:`PROPAGATE`, raised exactly as before): a sink outage (the run aborts, the task
is retried with backoff), a lost lease or job (stop at once), the PI database unreachable (the breaker), Celery's
soft time limit. A Plane database that cannot be reached *is* a source error: the Plane sources are skipped, the
others go on.

Each error is counted (``pi_source_errors_total{source, stage}``, every time), kept in ``sync_states`` (row
:data:`~pi_framework.contract.names.SOURCE_ERRORS`, scope the source's name: per stage the last error, since when,
when last seen and in which workspace), logged at ERROR at most once per ``CELERY_VECTOR_SYNC_INTERVAL`` per source
(one row every process shares, written compare-and-set: not once per tick nor once per workspace), shown by
``pi status`` and failing the ``sources`` health check. It is cleared when that stage works again for that source
(a live-sync or reconcile error: in the workspace it names).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any, TypeVar

from celery.exceptions import SoftTimeLimitExceeded
from loguru import logger
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from pi_framework import metrics, runtime
from pi_framework.contract.contributions import Changes, Source
from pi_framework.contract.names import SOURCE_ERRORS
from pi_framework.contract.sinks import SinkError
from pi_framework.db import DatabaseUnavailable, get_database
from pi_framework.db.fencing import LeaseLost
from pi_framework.db.models import SyncState, utcnow
from pi_framework.redaction import redact_text, settings_secrets
from pi_framework.sync.jobs import JobLost

T = TypeVar("T")

#: the stages a source is called in (the ``stage`` label of ``pi_source_errors_total``)
TICK, LIVE_SYNC, RECONCILE = "tick", "live_sync", "reconcile"
STAGES = (TICK, LIVE_SYNC, RECONCILE)
_STAGE_NAMES = {TICK: "the live-sync tick's change scan", LIVE_SYNC: "a live sync", RECONCILE: "a reconcile"}
#: raised through the guard unchanged: they keep the behaviour they had before sources were isolated
PROPAGATE: tuple[type[BaseException], ...] = (SinkError, LeaseLost, JobLost, DatabaseUnavailable, SoftTimeLimitExceeded)
#: characters of an error kept (the first line of its message: SQLAlchemy appends the statement and a link)
_MAX_ERROR = 500


def describe(error: BaseException) -> str:
    """``Type: first line of the message``, at most :data:`_MAX_ERROR` characters, secrets masked."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    with contextlib.suppress(Exception):  # no registry (a bare unit test): the patterns still mask
        return redact_text(text, settings_secrets(runtime.get_registry().settings))[:_MAX_ERROR]
    return redact_text(text)[:_MAX_ERROR]


class SourceFailed(Exception):
    """Source *source* raised *error* (a bug, a schema problem, Plane unreachable): skip it for the rest of the round."""

    def __init__(self, source: str, error: BaseException) -> None:
        self.source, self.error = source, error
        super().__init__(f"source {source}: {describe(error)}")


def _call(name: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return function(*args, **kwargs)
    except (SourceFailed, *PROPAGATE):
        raise
    except Exception as exc:
        raise SourceFailed(name, exc) from exc


def _stream(name: str, open_: Callable[[], Iterable[T]]) -> Iterator[T]:
    """The items of ``open_()``; whatever opening it or any step raises comes out as :class:`SourceFailed`."""
    iterator = _call(name, lambda: iter(open_()))
    try:
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                return
            except (SourceFailed, *PROPAGATE):
                raise
            except Exception as exc:
                raise SourceFailed(name, exc) from exc
            yield item
    finally:
        close = getattr(iterator, "close", None)  # a reader stopped early: let the source release what it holds
        if close is not None:
            with contextlib.suppress(Exception):
                close()


class Guarded:
    """*source* behind the guard: everything it raises (but :data:`PROPAGATE`) comes out as :class:`SourceFailed`,
    raised by the call or by the iterator it returned, whichever raised."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.name, self.kind, self.scope = source.name, source.kind, source.scope

    def __getattr__(self, attribute: str) -> Any:
        """Any other attribute of the source; a method beyond the protocol (``visible_metadata``, say) is guarded too."""
        value = getattr(self.source, attribute)
        if not callable(value):
            return value

        def guarded(*args: Any, **kwargs: Any) -> Any:
            result = _call(self.name, value, *args, **kwargs)
            return _stream(self.name, lambda: result) if isinstance(result, Iterator) else result

        return guarded

    def iter_documents(self, workspace_id: str) -> Iterator[Any]:
        return _stream(self.name, lambda: self.source.iter_documents(workspace_id))

    def visible_ids(self, workspace_id: str) -> Iterator[str]:
        return _stream(self.name, lambda: self.source.visible_ids(workspace_id))

    def visible_versions(self, workspace_id: str) -> Iterator[tuple[str, datetime | None]]:
        return _stream(self.name, lambda: self.source.visible_versions(workspace_id))

    def changes(self, workspace_id: str, cursor: dict[str, Any] | None) -> Changes:
        changes = _call(self.name, self.source.changes, workspace_id, cursor)
        return Changes(_stream(self.name, lambda: changes.documents), lambda: _call(self.name, changes.cursor))

    def changed_workspaces(
        self, state: dict[str, Any] | None, cursors: Iterable[dict[str, Any]] = ()
    ) -> tuple[set[str] | None, dict[str, Any]]:
        return _call(self.name, self.source.changed_workspaces, state, cursors)


class Round:
    """One pass of *stage* over the sources (a tick; a live sync or a reconcile of *workspace_id*).

    ``for source in round.sources(all_sources): try: ... except SourceFailed as failure: round.fail(failure)``, then
    :meth:`close` once the round's work is stored.
    """

    def __init__(self, stage: str, workspace_id: str | None = None) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}: one of {STAGES}")
        self.stage, self.workspace_id = stage, workspace_id
        #: source name -> its error (:func:`describe`), for the sources skipped in this round
        self.failed: dict[str, str] = {}
        self._ran: set[str] = set()

    def sources(self, sources: Iterable[Source]) -> list[Source]:
        """Those of *sources* that have not failed in this round, each behind the guard."""
        chosen = [source for source in sources if source.name not in self.failed]
        self._ran.update(source.name for source in chosen)
        return [Guarded(source) for source in chosen]

    def fail(self, failure: SourceFailed) -> None:
        """Skip *failure*'s source for the rest of the round (counted now, kept and logged by :meth:`close`)."""
        if failure.source not in self.failed:
            self.failed[failure.source] = describe(failure.error)
            metrics.source_error(failure.source, self.stage)

    def close(self, *, clear: bool = True) -> None:
        """Keep (and log, once per interval) the errors of this round; clear those of the sources that worked (not
        with ``clear=False``: a round cut short, whose remaining sources were not called)."""
        record(self.stage, self.workspace_id, self.failed, self._ran - set(self.failed) if clear else ())


# ---------------------------------------------------------------------- the row of each source
def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except (TypeError, ValueError):
        return None


def _write(name: str, version: datetime | None, value: dict[str, Any], now: datetime) -> bool:
    """Compare-and-set the row of source *name*: insert it if *version* is ``None`` and nobody did meanwhile, else
    update it if it is still at *version*; ``True`` when written (the loser of a race writes nothing)."""
    with get_database().session() as session:
        if version is None:
            insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
            statement: Any = (
                insert(SyncState)
                .values(source=SOURCE_ERRORS, scope=name, cursor=value, updated_at=now)
                .on_conflict_do_nothing(index_elements=["source", "scope"])
            )
        else:
            statement = (
                update(SyncState)
                .where(SyncState.source == SOURCE_ERRORS, SyncState.scope == name, SyncState.updated_at == version)
                .values(cursor=value, updated_at=now)
            )
        return bool(session.execute(statement).rowcount)


def _rows(names: Iterable[str] | None = None) -> dict[str, tuple[dict[str, Any], datetime]]:
    """``source name -> (value, version)`` of the rows of *names* (``None``: every row), one query."""
    query = select(SyncState).where(SyncState.source == SOURCE_ERRORS)
    if names is not None:
        query = query.where(SyncState.scope.in_(sorted(names)))
    with get_database().session() as session:
        return {row.scope: (dict(row.cursor or {}), row.updated_at) for row in session.scalars(query)}


def record(stage: str, workspace_id: str | None, failed: dict[str, str], worked: Iterable[str]) -> None:
    """Keep the errors of *failed* (source name -> error) in *stage*, and clear those of the sources that *worked*.

    One read; a write only when something changed, when the stored error is an interval old, or to log: at most
    once per ``CELERY_VECTOR_SYNC_INTERVAL`` per source and stage while nothing changes.
    """
    worked = set(worked) - set(failed)
    if not failed and not worked:
        return
    rows = _rows(set(failed) | worked)
    if not failed and not rows:
        return  # the usual case: every source works and none had an error
    settings = runtime.get_registry().settings
    interval = timedelta(seconds=settings.CELERY_VECTOR_SYNC_INTERVAL)
    now = utcnow()
    for name in sorted(worked & set(rows)):
        value, version = rows[name]
        errors = dict(value.get("errors") or {})
        entry = errors.get(stage)
        if entry is None or entry.get("workspace") not in (None, workspace_id):
            continue  # a live sync that worked in one workspace says nothing of another one
        del errors[stage]
        if _write(name, version, {**value, "errors": errors}, now):
            logger.info(
                "source {}: {} works again (it failed since {}: {})",
                name,
                _STAGE_NAMES[stage],
                entry.get("since"),
                entry.get("error"),
            )
    for name, error in sorted(failed.items()):
        value, version = rows.get(name, ({}, None))
        errors = dict(value.get("errors") or {})
        entry = errors.get(stage)
        logged = _when(value.get("logged_at"))
        log = logged is None or now - logged >= interval
        seen = _when(entry.get("at")) if entry else None
        if not log and entry is not None and entry.get("error") == error and seen is not None and now - seen < interval:
            continue  # kept already, and not an interval old
        errors[stage] = {
            "error": error,
            "since": entry.get("since") if entry else now.isoformat(),
            "at": now.isoformat(),
            "workspace": workspace_id,
        }
        logged_at = now.isoformat() if log else value.get("logged_at")
        if _write(name, version, {"logged_at": logged_at, "errors": errors}, now) and log:
            _log(name, stage, workspace_id, error, settings.CELERY_VECTOR_SYNC_INTERVAL)


def plugin_of(source: str) -> str | None:
    """The plugin that registered *source* (what ``PI_DISABLE_PLUGINS`` takes), if it is installed."""
    return runtime.get_registry().owner.get(("source", source))


def _log(name: str, stage: str, workspace_id: str | None, error: str, interval: float) -> None:
    plugin = plugin_of(name)
    where = f" in workspace {workspace_id}" if workspace_id else ""
    logger.bind(source=name, stage=stage, workspace=workspace_id).error(
        "source {} failed in {}{} and was skipped: {}. The other sources go on; its cursor stays and it is tried again "
        "every tick (logged once per {} s while it fails; pi status shows it). Fix it, or switch it off: "
        "PI_DISABLE_PLUGINS={}",
        name,
        _STAGE_NAMES[stage],
        where,
        error,
        interval,
        plugin or name,
    )


def source_errors() -> list[dict[str, Any]]:
    """The recorded errors of the installed workspace sources, oldest first: ``{"source", "plugin", "stage", "error",
    "since", "at", "workspace", "stale"}``.

    ``stale``: not seen again for ``2 × PI_RECONCILE_INTERVAL`` (at least 10 ticks): the round that failed has not run
    since (a workspace no longer live-synced, say), so it proves nothing about the source now.
    """
    registry = runtime.get_registry()
    settings = registry.settings
    installed = {source.name for source in registry.workspace_sources()}
    stale_after = timedelta(seconds=max(2 * settings.PI_RECONCILE_INTERVAL, 10 * settings.CELERY_VECTOR_SYNC_INTERVAL))
    now = utcnow()
    found = []
    for name, (value, _version) in _rows().items():
        if name not in installed:
            continue
        for stage, entry in (value.get("errors") or {}).items():
            seen = _when(entry.get("at"))
            found.append(
                {
                    "source": name,
                    "plugin": plugin_of(name),
                    "stage": stage,
                    "error": entry.get("error"),
                    "since": entry.get("since"),
                    "at": entry.get("at"),
                    "workspace": entry.get("workspace"),
                    "stale": seen is None or now - seen >= stale_after,
                }
            )
    return sorted(found, key=lambda row: (row["since"] or "", row["source"], row["stage"]))


def error_line(row: dict[str, Any]) -> str:
    """One line for a person: ``cycles failing in the tick since …: ProgrammingError: …``."""
    where = f" (workspace {row['workspace']})" if row.get("workspace") else ""
    line = f"{row['source']} failing in {row['stage'].replace('_', ' ')}{where} since {row['since']}: {row['error']}"
    return line + (f" [not seen since {row['at']}]" if row.get("stale") else "")


def check() -> dict[str, Any]:
    """Health check ``sources``: no installed workspace source raised at run time lately (see :func:`source_errors`)."""
    errors = source_errors()
    current = [row for row in errors if not row["stale"]]
    if current:
        plugins = ",".join(sorted({row["plugin"] or row["source"] for row in current}))
        raise RuntimeError(
            f"{len(current)} source error(s), those sources are skipped while the others sync: "
            + "; ".join(error_line(row) for row in current[:5])
            + f". Fix them, or switch them off: PI_DISABLE_PLUGINS={plugins}"
        )
    return {
        "sources": sorted(source.name for source in runtime.get_registry().workspace_sources()),
        "stale_errors": [error_line(row) for row in errors],
    }
