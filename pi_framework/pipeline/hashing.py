"""Hashes: what decides whether a chunk must be embedded and written again, or only its metadata updated.

A chunk's **content hash** covers its text, whether it is embedded, the chunking parameters, and the access fields
sinks filter on (workspace, kind, owner, projects, key, URL): a document that became private or moved project is
rewritten (and embedded) even if its text did not change. The model is not in it: the index generation records the
model (:mod:`pi_framework.sync.generations`), and a model change copies the chunks into a new generation, re-embedded,
so the ledger's hashes stay true across it.

Its **metadata hash** covers the document's free ``metadata`` (a work item's state, priority, labels, assignees,
dates, ...). When only that changed, the pipeline updates the stored metadata in place (``Sink.update_metadata``)
and embeds nothing; both hashes are kept in the ledger.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pi_framework.contract.documents import Document

#: bump when normalisation or chunking changes in a way that should re-embed everything
PIPELINE_VERSION = "2"


def content_hash(text: str, document: Document, chunking: str) -> str:
    payload = [
        PIPELINE_VERSION,
        "vector" if document.embed else "none",
        chunking,
        text,
        document.workspace_id,
        document.kind,
        document.owner_id,
        sorted(document.project_ids),
        document.key,
        document.url,
    ]
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()


def metadata_hash(document: Document) -> str:
    """The hash of *document*'s ``metadata`` (see :func:`hash_metadata`)."""
    return hash_metadata(document.metadata)


def hash_metadata(metadata: dict[str, Any]) -> str:
    """The hash of a document's *metadata* (keys in any order; values that are not JSON count by their ``str``)."""
    payload = json.dumps(metadata, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()
