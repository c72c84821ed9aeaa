"""Live sync: apply every workspace source's changes since its cursor; reconcile ids now and then.

A live sync runs only for a workspace whose latest job succeeded with live sync on (so never after a
downgrade, and never beside a vectorization), and holds the workspace's write lease, renewed after
every group of documents: a sync that lost its lease stops without moving any cursor.

A cursor moves only once the changes it covers are in the index. A sink outage raises (the task is
retried with backoff, the cursor stays). Documents the pipeline refused (bad input, a sink refusing the
item) hold the cursor too, so the next tick retries them, up to ``PI_DOCUMENT_RETRIES`` attempts; then
they are logged at ERROR with id and reason and moved aside (the cursor moves on, and every reconcile
tries them again), so one poison document never blocks a workspace.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from loguru import logger

from pi_framework import metrics, runtime
from pi_framework.pipeline.indexer import Indexer, IndexStats
from pi_framework.sync import jobs, leases, sources, state
from pi_framework.sync.compare import compare, pending_changes
from pi_framework.sync.leases import Leases, queued_marker, workspace_lease
from pi_framework.sync.vectorize import refeed


def reconcile(workspace_id: str, indexer: Indexer | None = None, keep_alive: Any = None) -> dict[str, int]:
    """Compare every visible id with the ledger: remove what disappeared (hard deletes), index what is missing or stale."""
    indexer = indexer or Indexer()
    counts = {"reconcile_deleted": 0, "reconcile_indexed": 0}
    for source in sources():
        to_index, to_delete = compare(source, workspace_id)
        if to_delete:
            counts["reconcile_deleted"] += indexer.delete_documents(to_delete)
        if to_index:
            counts["reconcile_indexed"] += refeed(source, workspace_id, to_index, indexer).documents_indexed
        if keep_alive is not None:
            keep_alive()
    state.reconciled(workspace_id)
    if any(counts.values()):
        logger.bind(workspace=workspace_id).info("reconcile {}: {}", workspace_id, counts)
    return counts


def _hold_for_retries(workspace_id: str, source: str, stats: IndexStats, retries: dict[str, Any]) -> bool:
    """Update *retries* with this run's refused documents of *source*; ``True`` while some deserve another try."""
    limit = runtime.get_registry().settings.PI_DOCUMENT_RETRIES
    for document_id in [doc for doc, entry in retries.items() if entry.get("source") == source]:
        if document_id not in stats.failed:
            del retries[document_id]  # indexed now (or deleted)
    hold = False
    for document_id, reason in stats.failed.items():
        attempts = retries.get(document_id, {}).get("attempts", 0) + 1
        retries[document_id] = {"source": source, "attempts": attempts, "reason": reason}
        hold = hold or attempts < limit
    if not hold:
        for document_id, entry in [(doc, entry) for doc, entry in retries.items() if entry.get("source") == source]:
            logger.bind(workspace=workspace_id).error(
                "live sync {}: document {} moved aside after {} attempts: {} (every reconcile tries it again)",
                workspace_id,
                document_id,
                entry["attempts"],
                entry["reason"],
            )
            del retries[document_id]
    return hold


def caught_up(workspace_id: str, flagged: tuple[dict[str, Any], datetime], pending: int) -> bool:
    """Clear the workspace's pending-work flag read as *flagged* before a sync that took *pending* changes, unless it
    was raised again since (then the next tick sends another sync); ``True`` when cleared."""
    if not state.clear_marker(workspace_id, flagged[1]):
        return False
    metrics.caught_up({**flagged[0], "pending": pending})
    return True


def live_sync(workspace_id: str, task_id: str | None = None, force_reconcile: bool = False) -> dict[str, Any]:
    """Apply every workspace source's changes since its cursor; at most one writer per workspace at a time."""
    holder = f"live:{task_id or uuid.uuid4()}"
    registry, lease = jobs(), leases()
    lease.clear(queued_marker(workspace_id))  # the message the trigger sent has started
    if not registry.live_sync_enabled(workspace_id):  # downgraded, or a vectorization job owns the workspace now
        return {"status": "skipped", "reason": "live sync is off for this workspace"}
    name = workspace_lease(workspace_id)
    if not lease.acquire(name, holder):
        return {"status": "skipped", "reason": "another task is writing this workspace"}
    try:
        return _LiveSync(workspace_id, lease, name, holder).run(force_reconcile)
    finally:
        lease.release(name, holder)


class _LiveSync:
    def __init__(self, workspace_id: str, lease: Leases, name: str, holder: str) -> None:
        self.workspace_id, self.lease, self.name, self.holder = workspace_id, lease, name, holder
        self.indexer = Indexer()

    def keep_alive(self, _stats: object = None) -> None:
        self.lease.renew(self.name, self.holder)

    def refeed(self, reason: str) -> dict[str, Any]:
        """Hand the workspace to a bulk re-feed (a vectorization job): it owns the workspace until it succeeds."""
        job_id = jobs().request(self.workspace_id)
        state.flag(self.workspace_id, f"bulk re-feed job {job_id}")
        logger.bind(workspace=self.workspace_id).warning(
            "live sync {}: {}: bulk re-feed job {} queued", self.workspace_id, reason, job_id
        )
        return {"status": "refeed", "workspace_id": self.workspace_id, "job_id": job_id}

    def run(self, force_reconcile: bool) -> dict[str, Any]:
        workspace_id = self.workspace_id
        settings = runtime.get_registry().settings
        workspace_sources = sources()
        cursors = {source.name: state.load(source.name, workspace_id) for source in workspace_sources}
        if any(cursor is None for cursor in cursors.values()):  # repaired by the job machinery, never by a full pass here
            return self.refeed("a source has no cursor")
        flagged = state.marker(workspace_id)  # read before measuring: a flag raised after this survives the sync
        pending = pending_changes(workspace_id, workspace_sources, settings.PI_LIVE_SYNC_MAX_MISSING)
        if pending > settings.PI_LIVE_SYNC_MAX_MISSING:
            return self.refeed(f"more than {settings.PI_LIVE_SYNC_MAX_MISSING} pending changes")
        result: dict[str, Any] = {"status": "success", "workspace_id": workspace_id, "pending": pending}
        retries = state.load(state.RETRIES, workspace_id) or {}
        before = dict(retries)
        for source in workspace_sources:
            changes = source.changes(workspace_id, cursors[source.name])
            stats = self.indexer.index(changes.documents, progress=self.keep_alive)
            self.keep_alive()
            if _hold_for_retries(workspace_id, source.name, stats, retries):
                result["cursor_held"] = result.get("cursor_held", 0) + 1
            else:
                state.save(source.name, workspace_id, changes.cursor())
            for key, value in stats.as_dict().items():
                value = len(value) if isinstance(value, dict) else value
                result[key] = result.get(key, 0) + value
        if retries and retries != before:
            state.save(state.RETRIES, workspace_id, retries)
        elif before and not retries:
            state.remove(state.RETRIES, workspace_id)
        if force_reconcile or state.reconcile_due(workspace_id, settings.PI_RECONCILE_INTERVAL):
            result.update(reconcile(workspace_id, self.indexer, keep_alive=self.keep_alive))
        if flagged is not None and "cursor_held" not in result:
            caught_up(workspace_id, flagged, pending)
        jobs().live_synced(workspace_id)
        return result
