"""Content hashes: what decides whether a chunk must be embedded and written again.

A chunk's hash covers its text, the model that embeds it, the chunking parameters, and the fields
sinks filter on (workspace, kind, owner, projects, key, URL): a document that became private or
moved project is rewritten even if its text did not change. Free ``metadata`` is not hashed, so a
source may put volatile values there without causing re-embedding.
"""

from __future__ import annotations

import hashlib
import json

from pi_framework.contract.documents import Document

#: bump when normalisation or chunking changes in a way that should re-embed everything
PIPELINE_VERSION = "1"


def content_hash(text: str, document: Document, model_name: str, chunking: str) -> str:
    payload = [
        PIPELINE_VERSION,
        model_name,
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
