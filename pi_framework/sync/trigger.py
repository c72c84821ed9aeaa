"""The live-sync tick: every live-synced workspace with pending work gets a live sync, and nothing else does.

A tick costs O(changes), not O(workspaces): each source scans its tables once across all workspaces from a
global watermark (``Source.changed_workspaces``; a source that cannot makes every workspace a candidate).
The workspaces it names are **flagged** (a marker in ``sync_states``) *before* the watermark moves, so a
tick that dies half-way loses nothing; then every flagged workspace, and every workspace whose id
reconcile is due (one SQL query), is sent a live sync. The tick itself reads no workspace's content:
the live sync measures the pending work (the one measure, :func:`~pi_framework.sync.compare.pending_changes`),
takes it, or — above ``PI_LIVE_SYNC_MAX_MISSING`` — queues the bulk re-feed, and clears the flag once
the workspace is caught up. A flag raised while a sync runs survives it (the marker is versioned).

At most one live sync per workspace is queued or running: a queued one leaves a marker (a lease that
expires, in case the message is lost) that the task clears when it starts, and a running one holds the
workspace's write lease. Ticks never overlap (a lease of their own): a tick that outlives the interval
makes the next one skip instead of racing it. Since when a workspace has had pending work is recorded,
so ``pi status`` and the ``pending_work`` health check can say which workspaces are behind, and why.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from loguru import logger

from pi_framework import runtime
from pi_framework.contract.contributions import Source
from pi_framework.db.models import JobStatus, utcnow
from pi_framework.sync import current_jobs, current_leases, sources, state
from pi_framework.sync.dispatch import LIVE_SYNC_TASK, send_task
from pi_framework.sync.isolation import LIVE_SYNC, TICK, Round, SourceFailed, source_errors
from pi_framework.sync.leases import queued_marker, workspace_lease

#: ``SyncState.source`` prefix of a source's global watermark (scope ``*``)
GLOBAL_SCAN = "global-scan"
#: the lease a running tick holds (ticks never overlap)
TICK_LEASE = "trigger-live-sync"


def trigger() -> dict[str, int]:
    """One tick (see the module docstring); returns what it did."""
    settings = runtime.get_registry().settings
    # how long a queued marker, and a tick's own lease, outlive a lost message or a dead tick: two intervals (at
    # least 10 s), after which a workspace still flagged is sent again (a duplicate is harmless: the lease skips it)
    queued_for = max(2 * settings.CELERY_VECTOR_SYNC_INTERVAL, 10)
    registry, lease = current_jobs(), current_leases()
    counts = {"dispatched": 0, "flagged": 0, "busy": 0, "queued": 0, "failed": 0}
    holder = f"tick:{uuid.uuid4()}"
    if not lease.acquire(TICK_LEASE, holder, seconds=queued_for):
        return {**counts, "skipped": 1}
    try:
        workspace_sources = sources()
        changed, commit = changed_workspaces(workspace_sources)
        if changed is not None:
            for workspace_id in registry.live_sync_workspaces(among=changed):
                state.flag(workspace_id)  # before the watermark moves: a tick that dies here loses no change
                counts["flagged"] += 1
        commit()
        flagged = set(registry.live_sync_workspaces(among=state.all_of(state.PENDING)))
        if changed is None:
            candidates = set(registry.live_sync_workspaces())
        else:
            candidates = flagged | set(registry.reconcile_due(settings.PI_RECONCILE_INTERVAL))
        held = lease.held()
        for workspace_id in sorted(candidates):
            if workspace_lease(workspace_id) in held or queued_marker(workspace_id) in held:
                counts["busy" if workspace_lease(workspace_id) in held else "queued"] += 1
                if changed is None and workspace_id not in flagged:
                    state.flag(workspace_id)  # not measured now: keep it a candidate until a sync looks at it
            else:
                try:
                    if lease.acquire(queued_marker(workspace_id), "trigger", seconds=queued_for):
                        send_task(LIVE_SYNC_TASK, workspace_id=workspace_id)
                        counts["dispatched"] += 1
                except Exception as exc:  # noqa: BLE001 - one workspace's problem must not stop the others
                    counts["failed"] += 1
                    logger.bind(workspace=workspace_id).error(
                        "trigger_live_sync: workspace {}: {}: {}", workspace_id, type(exc).__name__, exc
                    )
        return counts
    finally:
        lease.release(TICK_LEASE, holder)


def changed_workspaces(workspace_sources: list[Source]) -> tuple[set[str] | None, Callable[[], None]]:
    """Workspaces any source saw change since its global watermark (``None``: check them all), and the function
    that stores the sources' new watermarks — to be called only once the changed workspaces are flagged.

    A source whose scan raises (:mod:`~pi_framework.sync.isolation`) is skipped for this tick: its watermark stays,
    so the changes it would have named are found by the first scan that works again; the others' are flagged now.
    """
    changed: set[str] | None = set()
    following: dict[str, dict[str, Any]] = {}
    round_ = Round(TICK)
    for source in round_.sources(workspace_sources):
        key = f"{GLOBAL_SCAN}:{source.name}"
        saved = state.load(key, "*")
        cursors = list(state.all_of(source.name).values()) if saved is None else []  # first tick only: O(workspaces)
        try:
            workspaces, following[key] = source.changed_workspaces(saved, cursors)
        except SourceFailed as failure:
            round_.fail(failure)
            continue
        changed = None if changed is None or workspaces is None else changed | workspaces
    round_.close()

    def commit() -> None:
        for key, value in following.items():
            if value:  # a source that cannot scan globally (BaseSource's default) keeps no state
                state.save(key, "*", value)

    return changed, commit


def stuck_workspaces(older_than: float) -> list[dict[str, Any]]:
    """Workspaces whose pending work is older than *older_than* seconds, each with why it is still pending."""
    registry, now = current_jobs(), utcnow()
    held = current_leases().held()
    stuck: list[dict[str, Any]] = []
    failing: str | None = None  # the sources live syncs skip (isolation): read once, only if a workspace is behind
    for workspace_id, marker in sorted(state.all_of(state.PENDING).items()):
        age = (now - datetime.fromisoformat(marker["since"])).total_seconds()
        if age < older_than:
            continue
        if failing is None:
            errors = [row for row in source_errors() if row["stage"] == LIVE_SYNC and not row["stale"]]
            failing = "; ".join(f"{row['source']} ({row['error']})" for row in errors)
        job = registry.latest(workspace_id)
        if job is None:
            why = "no vectorization job"
        elif not (job.status == JobStatus.SUCCESS and job.live_sync_enabled):
            why = f"job {job.id} {job.status}" + (f": {job.error}" if job.error else "")
            if job.status in JobStatus.ACTIVE:
                why += f" ({job.progress_done}/{job.progress_total or '?'})"
        elif workspace_lease(workspace_id) in held:
            why = f"{marker['path']} running ({held[workspace_lease(workspace_id)]})"
        else:
            retries = state.load(state.RETRIES, workspace_id) or {}
            why = f"{marker['path']} not caught up" + (
                f": {len(retries)} document(s) being retried, e.g. {next(iter(retries))}: {next(iter(retries.values()))['reason']}"
                if retries
                else (f": source(s) skipped: {failing}" if failing else " (failing live syncs: see the worker log)")
            )
        stuck.append(
            {
                "workspace_id": workspace_id,
                "pending_since": marker["since"],
                "seconds": round(age),
                "pending": marker["pending"],
                "why": why,
            }
        )
    return stuck
