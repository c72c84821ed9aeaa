"""Live sync: apply every workspace source's changes since its cursor; reconcile ids now and then.

A live sync runs only for a workspace whose latest job succeeded with live sync on (so never after a
downgrade, and never beside a vectorization), and holds the workspace's write lease, renewed after
every group of documents: a sync that lost its lease stops without moving any cursor.

A cursor moves only once the changes it covers are in the index. A sink outage raises (the task is
retried with backoff, the cursor stays). Documents the pipeline refused (bad input, a sink refusing the
item) are withdrawn from the index (fail closed: no older version stays searchable) and hold the cursor,
so the next tick retries them, up to ``PI_DOCUMENT_RETRIES`` attempts; then they are logged at ERROR with
id and reason and *parked*: the cursor moves on, so one poison document never blocks a workspace, but the
document stays pending (``document-retries``, counted by the measure of pending work, the workspace stays
flagged and listed by ``pi status``) and is tried again with backoff until it goes through.

A source that raises (a bug, a schema problem: :mod:`pi_framework.sync.isolation`) is skipped for the run, in the
measure, the changes and the reconcile alike: the other sources' changes are applied, its cursor stays, and the
workspace stays flagged, so every tick tries it again; its error is counted, kept and shown until it works again.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from loguru import logger

from pi_framework import metrics, runtime
from pi_framework.db.models import utcnow
from pi_framework.pipeline.indexer import Indexer, IndexStats
from pi_framework.sync import compare_requests, current_jobs, current_leases, sources, state
from pi_framework.sync.compare import compare, pending_changes
from pi_framework.sync.isolation import LIVE_SYNC, RECONCILE, Round, SourceFailed
from pi_framework.sync.leases import Fence, Leases, queued_marker, workspace_lease
from pi_framework.sync.metadata import stale_metadata
from pi_framework.sync.vectorize import refeed


def reconcile(workspace_id: str, indexer: Indexer | None = None, keep_alive: Any = None) -> dict[str, int]:
    """Compare every visible id with the ledger: remove what disappeared (hard deletes), index what is missing or stale
    (its ``updated_at``, or its metadata where the source offers it: :mod:`pi_framework.sync.metadata`).

    A source that raises is skipped (``reconcile_skipped`` counts them): nothing of it is deleted on the strength of
    a partial list, and it is compared again at the next reconcile; the others are reconciled.
    """
    indexer = indexer or Indexer()
    counts = {"reconcile_deleted": 0, "reconcile_indexed": 0}
    round_ = Round(RECONCILE, workspace_id)
    for source in round_.sources(sources()):
        try:
            to_index, to_delete = compare(source, workspace_id)  # the whole list first: a failure deletes nothing
            to_index |= stale_metadata(source, workspace_id)  # metadata changed where no updated_at moved (bulk_update)
            if to_delete:
                counts["reconcile_deleted"] += indexer.delete_documents(to_delete)
            if to_index:
                counts["reconcile_indexed"] += refeed(source, workspace_id, to_index, indexer).documents_indexed
        except SourceFailed as failure:
            round_.fail(failure)
        if keep_alive is not None:
            keep_alive()
    state.reconciled(workspace_id)
    round_.close()
    if round_.failed:
        counts["reconcile_skipped"] = len(round_.failed)
    if any(counts.values()):
        logger.bind(workspace=workspace_id).info("reconcile {}: {}", workspace_id, counts)
    return counts


#: first wait before a parked document is tried again; doubles with every failed try, up to the reconcile interval
_PARKED_RETRY_SECONDS = 60


def _parked(entry: dict[str, Any]) -> bool:
    return "retry_at" in entry


def _due(retries: dict[str, Any], source: str) -> set[str]:
    """Parked documents of *source* whose next try is due."""
    now = utcnow().isoformat()
    return {doc for doc, entry in retries.items() if entry.get("source") == source and _parked(entry) and entry["retry_at"] <= now}


def _park(workspace_id: str, document_id: str, entry: dict[str, Any]) -> None:
    """Past ``PI_DOCUMENT_RETRIES``: the cursor moves on, the document stays pending (retried with backoff)."""
    settings = runtime.get_registry().settings
    backoff = 2 ** max(entry["attempts"] - settings.PI_DOCUMENT_RETRIES, 0)
    wait = min(_PARKED_RETRY_SECONDS * backoff, settings.PI_RECONCILE_INTERVAL)
    entry["retry_at"] = (utcnow() + timedelta(seconds=wait)).isoformat()
    logger.bind(workspace=workspace_id).error(
        "live sync {}: document {} still not indexed after {} attempts: {} (it is not in the index; the cursor moves on, "
        "it stays pending and is tried again in {} s)",
        workspace_id,
        document_id,
        entry["attempts"],
        entry["reason"],
        wait,
    )


def _hold_for_retries(workspace_id: str, source: str, stats: IndexStats, retries: dict[str, Any], tried: set[str]) -> bool:
    """Update *retries* with this run's refused documents of *source*; ``True`` while the cursor must stay (some
    document deserves another try from the cursor). *tried* are the parked documents this run tried again.

    A refused document is not in the index (the pipeline fails closed), so no older version is searchable while
    it waits. Past ``PI_DOCUMENT_RETRIES`` it is *parked*: it stays in ``document-retries`` (counted as pending, shown
    in ``pi status``) and is tried again with backoff, while the cursor moves on for the rest.
    """
    limit = runtime.get_registry().settings.PI_DOCUMENT_RETRIES
    for document_id in [doc for doc, entry in retries.items() if entry.get("source") == source]:
        if document_id not in stats.failed and (document_id in tried or not _parked(retries[document_id])):
            del retries[document_id]  # indexed now (or deleted)
    hold = False
    for document_id, reason in stats.failed.items():
        entry = retries[document_id] = {**retries.get(document_id, {"source": source, "attempts": 0})}  # a new dict:
        entry.update(attempts=entry["attempts"] + 1, reason=reason)  # the caller compares with the entries it read
        if _parked(entry) or entry["attempts"] >= limit:
            _park(workspace_id, document_id, entry)
        else:
            hold = True
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
    registry, lease = current_jobs(), current_leases()
    lease.clear(queued_marker(workspace_id))  # the message the trigger sent has started
    if not registry.live_sync_enabled(workspace_id):  # downgraded, or a vectorization job owns the workspace now
        return {"status": "skipped", "reason": "live sync is off for this workspace"}
    fence = lease.fence(workspace_lease(workspace_id), holder)
    if fence is None:
        return {"status": "skipped", "reason": "another task is writing this workspace"}
    try:
        return _LiveSync(workspace_id, lease, fence).run(force_reconcile)
    finally:
        lease.release(fence.name, holder)


class _LiveSync:
    def __init__(self, workspace_id: str, lease: Leases, fence: Fence) -> None:
        self.workspace_id, self.lease, self.fence = workspace_id, lease, fence
        self.indexer = Indexer(fence=fence)  # every write carries the lease's token (see pipeline.indexer)

    def keep_alive(self, _stats: object = None) -> None:
        self.lease.renew(self.fence.name, self.fence.holder)

    def refeed(self, reason: str) -> dict[str, Any]:
        """Hand the workspace to a bulk re-feed (a vectorization job): it owns the workspace until it succeeds."""
        job_id = current_jobs().request(self.workspace_id)
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
        compare_asked = compare_requests.compare_requested(workspace_id)  # the change feed saw a change updated_at may not show
        round_ = Round(LIVE_SYNC, workspace_id)  # a source that raises is skipped from here on; the others go on
        pending = pending_changes(workspace_id, workspace_sources, settings.PI_LIVE_SYNC_MAX_MISSING, round_)
        if pending > settings.PI_LIVE_SYNC_MAX_MISSING:
            round_.close(clear=False)  # the measure stopped early: some sources were not called
            return self.refeed(f"more than {settings.PI_LIVE_SYNC_MAX_MISSING} pending changes")
        result: dict[str, Any] = {"status": "success", "workspace_id": workspace_id, "pending": pending}
        retries = state.load(state.RETRIES, workspace_id) or {}
        before = dict(retries)
        for source in round_.sources(workspace_sources):
            try:
                changes = source.changes(workspace_id, cursors[source.name])
                stats = self.indexer.index(changes.documents, progress=self.keep_alive)
                self.keep_alive()
                if tried := _due(retries, source.name) - set(stats.failed):
                    again = refeed(source, workspace_id, tried, self.indexer)
                    stats.documents_indexed += again.documents_indexed
                    stats.failed.update({doc: reason for doc, reason in again.failed.items() if doc in tried})
                    self.keep_alive()
                following = changes.cursor()  # read before the retries are updated: a source failing here moves nothing
            except SourceFailed as failure:  # its cursor stays; what it yielded before it raised is indexed (idempotent)
                round_.fail(failure)
                continue
            if _hold_for_retries(workspace_id, source.name, stats, retries, tried):
                result["cursor_held"] = result.get("cursor_held", 0) + 1
            else:
                state.save(source.name, workspace_id, following)
            for key, value in stats.as_dict().items():
                value = len(value) if isinstance(value, dict) else value
                result[key] = result.get(key, 0) + value
        if retries and retries != before:
            state.save(state.RETRIES, workspace_id, retries)
        elif before and not retries:
            state.remove(state.RETRIES, workspace_id)
        round_.close()
        if round_.failed:
            result["skipped_sources"] = dict(round_.failed)
        if force_reconcile or compare_asked is not None or state.reconcile_due(workspace_id, settings.PI_RECONCILE_INTERVAL):
            result.update(reconcile(workspace_id, self.indexer, keep_alive=self.keep_alive))
            if compare_asked is not None and not result.get("reconcile_skipped"):
                compare_requests.clear_compare(workspace_id, compare_asked)  # unless asked again while this ran
        if retries:
            result["parked"] = sum(_parked(entry) for entry in retries.values())
        # a document still to retry, or a source skipped, keeps the workspace flagged: every tick sends a live sync
        if retries or round_.failed or result.get("reconcile_skipped"):
            if flagged is None:
                state.flag(workspace_id, "document retries" if retries else "source errors")
        elif flagged is not None:
            caught_up(workspace_id, flagged, pending)
        current_jobs().live_synced(workspace_id)
        return result
