"""The document and chunk types every source and sink speaks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

BodyFormat = Literal["text", "html", "markdown"]


@dataclass
class Document:
    """One piece of content as a source yields it.

    ``id`` is stable and namespaced by source (``issues:<uuid>``, ``docs:<owner>/<repo>:<path>``).
    ``workspace_id`` is ``None`` for global content (docs), searchable from every workspace.
    ``owner_id`` set means private: only that user finds it. ``deleted=True`` asks the pipeline
    to remove the document from every sink and the ledger. ``embed=False`` indexes it for full-text
    search only (its chunks carry no vector).
    """

    id: str
    source: str
    kind: str
    workspace_id: str | None
    title: str = ""
    body: str = ""
    body_format: BodyFormat = "text"
    key: str | None = None
    url: str | None = None
    updated_at: datetime | None = None
    deleted: bool = False
    embed: bool = True
    project_ids: list[str] = field(default_factory=list)
    owner_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Chunk:
    """A window of a document's text, the unit that is embedded and written to sinks.

    ``id`` is ``<document id>#<index>``: re-indexing the same content overwrites, never duplicates.
    ``content_hash`` covers what is embedded and the access fields, ``metadata_hash`` the ``metadata`` (the pipeline's
    ledger keeps both; a sink need not store them).
    """

    id: str
    document_id: str
    index: int
    text: str
    content_hash: str
    source: str
    kind: str
    workspace_id: str | None
    title: str = ""
    key: str | None = None
    url: str | None = None
    project_ids: list[str] = field(default_factory=list)
    owner_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    vector: list[float] | None = None
    metadata_hash: str = ""
    #: the version the sink stored the chunk with (filled by ``Sink.read_chunks``; ``None``: written unversioned).
    #: Writers pass their version to ``Sink.write`` instead.
    version: int | None = None


def chunk_id(document_id: str, index: int) -> str:
    return f"{document_id}#{index}"
