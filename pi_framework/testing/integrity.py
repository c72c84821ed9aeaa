"""How far the index is from what the sources show: the check every end-to-end test ends with."""

from __future__ import annotations

from sqlalchemy import select

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
