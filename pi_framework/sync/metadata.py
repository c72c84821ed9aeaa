"""Metadata drift: documents whose metadata in the index is not the source's, though no ``updated_at`` says so.

Plane changes some fields without moving ``updated_at``: a bulk ``state_id`` update (``QuerySet.bulk_update``), a
label or assignee link deleted outright. Watermarks and version comparisons cannot see those; a source that offers
``visible_metadata(workspace_id)`` (see :meth:`pi_framework.plane.source.PlaneSource.visible_metadata`) lets the
reconcile compare every visible document's metadata hash with the ledger's and re-feed the ones that differ. Their
text did not change, so the pipeline only updates their metadata in each sink (nothing is embedded).
"""

from __future__ import annotations

from pi_framework.batching import chunked
from pi_framework.contract.contributions import Source
from pi_framework.db import get_database
from pi_framework.pipeline.hashing import hash_metadata
from pi_framework.pipeline.ledger import Ledger

#: documents per ledger lookup
_BATCH = 500


def stale_metadata(source: Source, workspace_id: str) -> set[str]:
    """Recorded documents of *source* whose metadata differs from what the ledger holds (empty when the source does not
    offer ``visible_metadata``). Documents the ledger does not hold are left to the id comparison."""
    reader = getattr(source, "visible_metadata", None)
    listed = reader(workspace_id) if reader is not None else None
    if listed is None:
        return set()
    ledger = Ledger(get_database())
    stale: set[str] = set()
    for batch in chunked(listed, _BATCH):
        entries = ledger.lookup([document_id for document_id, _ in batch])
        for document_id, metadata in batch:
            entry = entries.get(document_id)
            if entry is None or not entry.recorded:
                continue
            wanted = hash_metadata(metadata)
            if any(found != wanted for found in entry.metadata_hashes.values()):
                stale.add(document_id)
    return stale
