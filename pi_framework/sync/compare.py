"""Comparing what a source shows with what the ledger holds, and **the** measure of pending work."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pi_framework.batching import chunked
from pi_framework.contract.contributions import Source
from pi_framework.contract.documents import Document
from pi_framework.db import get_database
from pi_framework.pipeline.ledger import Ledger, LedgerEntry, same_instant
from pi_framework.sync import state
from pi_framework.sync.isolation import Round, SourceFailed
from pi_framework.sync.jobs import as_utc

#: documents per ledger lookup while measuring pending work
_BATCH = 200


def visible_versions(source: Source, workspace_id: str) -> Iterable[tuple[str, datetime | None]]:
    """The source's ``visible_versions`` in UTC (a ``None`` version: presence only, see ``BaseSource``)."""
    return ((document_id, as_utc(stamp)) for document_id, stamp in source.visible_versions(workspace_id))


def compare(source: Source, workspace_id: str) -> tuple[set[str], set[str]]:
    """``(to_index, to_delete)``: visible documents missing or stale in the ledger, and ledger entries no longer visible.

    Documents with chunks written ahead but never confirmed (a crash between sink write and ledger commit)
    count as ledger entries: if they are no longer visible they are deleted from every sink.
    """
    ledger = Ledger(get_database())
    recorded: dict[str, datetime | None | str] = dict(ledger.versions(workspace_id, source.name))
    unconfirmed = ledger.unrecorded_documents(workspace_id, f"{source.name}:")
    to_index: set[str] = set()
    for document_id, stamp in visible_versions(source, workspace_id):
        unconfirmed.discard(document_id)
        indexed = recorded.pop(document_id, "missing")
        if indexed == "missing" or (stamp is not None and indexed != stamp):
            to_index.add(document_id)
    return to_index, set(recorded) | unconfirmed


def missing_or_stale_count(workspace_id: str, sources: list[Source]) -> int:
    """Documents of every source that are missing, stale or left over in the index (a full comparison)."""
    total = 0
    for source in sources:
        to_index, to_delete = compare(source, workspace_id)
        total += len(to_index) + len(to_delete)
    return total


def is_pending(document: Document, entry: LedgerEntry | None) -> bool:
    """The index does not hold this version of *document* (a deletion counts only while the ledger still has it)."""
    if document.deleted:
        return entry is not None and (entry.recorded or bool(entry.hashes))
    return entry is None or not entry.recorded or not same_instant(entry.source_updated_at, document.updated_at)


def pending_changes(workspace_id: str, sources: list[Source], limit: int, round_: Round | None = None) -> int:
    """How much work is pending in *workspace_id*: **the** measure of pending work (counting stops once above *limit*).

    A document counts when it changed since its source's cursor and the ledger does not hold that
    version (changed, new, or hidden/deleted but still indexed). Documents re-read only because of the
    cursor's overlap window do not count, so the measure falls to 0 once the work is done, and the
    trigger (live sync up to ``limit``, a bulk re-feed above it) uses nothing else. A source without a
    cursor counts as more than *limit*: only a vectorization job gives it one. Parked documents (refused more than
    ``PI_DOCUMENT_RETRIES`` times, the cursor moved on) count until they go through.

    With *round_* (a live sync's :class:`~pi_framework.sync.isolation.Round`) a source that raises is skipped (and
    failed in the round) and the others are measured; without, it raises.
    """
    ledger = Ledger(get_database())
    count = state.parked(workspace_id)
    for source in sources if round_ is None else round_.sources(sources):
        cursor = state.load(source.name, workspace_id)
        if cursor is None:
            return limit + 1
        measured = 0
        try:
            for batch in chunked(source.changes(workspace_id, cursor).documents, _BATCH):
                entries = ledger.lookup([document.id for document in batch])
                measured += sum(is_pending(document, entries.get(document.id)) for document in batch)
                if count + measured > limit:
                    return count + measured
        except SourceFailed as failure:
            if round_ is None:
                raise
            round_.fail(failure)
            continue
        count += measured
    return count
