"""The live-sync tick: every live-synced workspace with pending work is taken by exactly one path.

:func:`~pi_framework.sync.compare.pending_changes` up to ``PI_LIVE_SYNC_MAX_MISSING``: a live sync is
queued; above it (or a source without a cursor): a bulk re-feed — a vectorization job, which skips what
the ledger holds, deletes what is no longer visible, shows progress and moves the cursors when done — is
queued at once. While that job is active the workspace is not live-synced, so the two never overlap.

A tick costs O(changes), not O(workspaces): each source that can (``changed_workspaces``) scans its
tables once across all workspaces from a global watermark, and only workspaces it names, workspaces
already marked as having pending work (a failed or busy sync, a held cursor), and workspaces whose
reconcile is due are measured. A source that cannot scan globally makes every workspace a candidate.

At most one live sync per workspace is queued or running: a queued one leaves a marker (a lease that
expires, in case the message is lost) that the task clears when it starts, and a running one holds the
workspace's write lease. A workspace with nothing pending gets a live sync only when its id reconcile
is due. Since when a workspace has had pending work is recorded, so ``pi status`` and the
``pending_work`` health check can say which workspaces are behind, and why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from loguru import logger

from pi_framework import metrics, runtime
from pi_framework.contributions import Source
from pi_framework.db.models import JobStatus, utcnow
from pi_framework.sync import jobs, leases, sources, state
from pi_framework.sync.compare import pending_changes
from pi_framework.sync.dispatch import LIVE_SYNC_TASK, send_task
from pi_framework.sync.leases import queued_marker, workspace_lease

#: ``SyncState.source`` prefix of a source's global watermark (scope ``*``)
GLOBAL_SCAN = "global-scan"


def trigger(max_missing: int | None = None) -> dict[str, int]:
    """One tick (see the module docstring); returns what it did, by path."""
    settings = runtime.get_registry().settings
    limit = settings.PI_LIVE_SYNC_MAX_MISSING if max_missing is None else max_missing
    queued_for = max(5 * settings.CELERY_VECTOR_SYNC_INTERVAL, 60)
    registry, lease = jobs(), leases()
    counts = {"dispatched": 0, "refeed": 0, "idle": 0, "busy": 0, "queued": 0, "failed": 0}
    markers = state.all_of(state.PENDING)
    stamps = state.all_of(state.RECONCILE)
    held = lease.held()
    workspace_sources = sources()
    live = registry.live_sync_workspaces()
    changed = changed_workspaces(workspace_sources)
    for workspace_id in sorted(set(changed or ()) & set(live)):
        if workspace_id not in markers:  # remembered before anything else, so a crash of this tick loses no change
            markers[workspace_id] = state.flag(workspace_id)
    for workspace_id in live:
        log = logger.bind(workspace=workspace_id)
        candidate = changed is None or workspace_id in markers
        if not candidate and not state.reconcile_due(workspace_id, settings.PI_RECONCILE_INTERVAL, stamps):
            counts["idle"] += 1
            continue
        if workspace_lease(workspace_id) in held:
            counts["busy"] += 1
            continue
        if queued_marker(workspace_id) in held:
            counts["queued"] += 1
            continue
        try:
            pending = pending_changes(workspace_id, workspace_sources, limit)
            due = pending == 0 and state.reconcile_due(workspace_id, settings.PI_RECONCILE_INTERVAL, stamps)
            mark_pending(workspace_id, pending, markers.get(workspace_id))
            if pending > limit:
                job_id = registry.request(workspace_id)
                mark_pending(workspace_id, pending, markers.get(workspace_id), f"bulk re-feed job {job_id}")
                counts["refeed"] += 1
                log.warning(
                    "trigger_live_sync: workspace {} has more than {} pending changes: bulk re-feed job {} queued",
                    workspace_id,
                    limit,
                    job_id,
                )
            elif pending or due:
                if lease.acquire(queued_marker(workspace_id), "trigger", seconds=queued_for):
                    send_task(LIVE_SYNC_TASK, workspace_id=workspace_id)
                    counts["dispatched"] += 1
            else:
                counts["idle"] += 1
        except Exception as exc:  # noqa: BLE001 - one workspace's problem must not stop the others
            counts["failed"] += 1
            log.error("trigger_live_sync: workspace {}: {}: {}", workspace_id, type(exc).__name__, exc)
    return counts


def changed_workspaces(workspace_sources: list[Source]) -> set[str] | None:
    """Workspaces any source saw change since its global watermark (stored per source); ``None``: check them all."""
    changed: set[str] | None = set()
    for source in workspace_sources:
        key = f"{GLOBAL_SCAN}:{source.name}"
        workspaces, following = source.changed_workspaces(state.load(key, "*"))
        if following:  # a source that cannot scan globally (BaseSource's default) keeps no state
            state.save(key, "*", following)
        changed = None if changed is None or workspaces is None else changed | workspaces
    return changed


def mark_pending(workspace_id: str, pending: int, marker: dict[str, Any] | None, path: str = "live sync") -> None:
    """Remember since when *workspace_id* has pending work (the marker goes when nothing is pending)."""
    if not pending:
        if marker is not None:
            state.remove(state.PENDING, workspace_id)
            metrics.caught_up(marker)
        return
    since = marker["since"] if marker else utcnow().isoformat()
    value = {"since": since, "pending": pending, "path": path}
    if value != marker:
        state.save(state.PENDING, workspace_id, value)


def stuck_workspaces(older_than: float) -> list[dict[str, Any]]:
    """Workspaces whose pending work is older than *older_than* seconds, each with why it is still pending."""
    registry, now = jobs(), utcnow()
    held = leases().held()
    stuck = []
    for workspace_id, marker in sorted(state.all_of(state.PENDING).items()):
        age = (now - datetime.fromisoformat(marker["since"])).total_seconds()
        if age < older_than:
            continue
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
                else " (failing live syncs: see the worker log)"
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
