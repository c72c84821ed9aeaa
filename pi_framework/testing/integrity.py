"""How far the index is from what the sources show: the check every end-to-end test ends with."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.engine import Engine

from pi_framework import runtime
from pi_framework.db import get_database
from pi_framework.db.models import IndexedChunk, IndexedDocument
from pi_framework.sync import sources
from pi_framework.sync.compare import missing_or_stale_count


def index_report(workspace_id: str) -> dict[str, int]:
    """Differences between the workspace sources' visible documents and the index; all zeros when they agree.

    ``missing``/``leftover``: visible documents the ledger lacks / ledger documents no longer visible; ``stale``:
    recorded at another version than the source's; ``unconfirmed_chunks``: ledger chunks some sink lacks;
    ``extra_sink_chunks``: chunks a sink holds for the workspace beyond the ledger's (duplicates, orphans).
    """
    visible = {document_id for source in sources() for document_id in source.visible_ids(workspace_id)}
    with get_database().session() as session:
        recorded = set(session.scalars(select(IndexedDocument.document_id).where(IndexedDocument.workspace_id == workspace_id)))
        chunks = set(session.scalars(select(IndexedChunk.chunk_id).where(IndexedChunk.workspace_id == workspace_id)))
    missing, leftover = len(visible - recorded), len(recorded - visible)
    report = {
        "missing": missing,
        "leftover": leftover,
        "stale": missing_or_stale_count(workspace_id, sources()) - missing - leftover,
        "unconfirmed_chunks": 0,
        "extra_sink_chunks": 0,
    }
    for sink in runtime.get_sinks():
        confirmed = sink.existing(sorted(chunks)) if chunks else set()
        report["unconfirmed_chunks"] += len(chunks - confirmed)
        report["extra_sink_chunks"] += sink.count(workspace_id) - len(confirmed)
    return report


def settle(ticks: int = 8) -> list[dict[str, Any]]:
    """Run live-sync ticks and do in this process what a worker would do with what they queue (each queued live
    sync, then each queued vectorization job), until a tick dispatches nothing; returns what each tick did:
    ``{"tick": trigger counts, "synced": {workspace: live-sync status}, "jobs": {workspace: job status}}``."""
    from pi_framework.sync import current_jobs, current_leases
    from pi_framework.sync.live import live_sync
    from pi_framework.sync.trigger import trigger
    from pi_framework.sync.vectorize import vectorize

    seen: list[dict[str, Any]] = []
    for _ in range(ticks):
        counts = trigger()
        queued = sorted(name.split(":", 1)[1] for name in current_leases().held() if name.startswith("queued:"))
        synced = {workspace_id: live_sync(workspace_id)["status"] for workspace_id in queued}
        ran = {}
        for workspace_id in [workspace for workspace, status in synced.items() if status == "refeed"]:
            job = current_jobs().active(workspace_id)
            ran[workspace_id] = vectorize(workspace_id, task_id=f"settle-{job.id}", job_id=job.id)["status"]
        seen.append({"tick": counts, "synced": synced, "jobs": ran})
        if not counts["dispatched"]:
            return seen
    raise AssertionError(f"still dispatching after {ticks} ticks: {seen}")


@contextmanager
def statements() -> Iterator[list[str]]:
    """Every SQL statement any engine (PI database, Plane) runs inside the block: what a tick costs, counted."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)
