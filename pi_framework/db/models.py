"""Tables of the PI database: what the framework itself knows (Plane's database is never written)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, String, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


#: the column types of an annotation, the same for the core's tables and the plugins'
_TYPES = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class Base(DeclarativeBase):
    """The core's tables."""

    type_annotation_map = _TYPES


class PluginTable(DeclarativeBase):
    """The base of a plugin's own tables in the PI database, created and upgraded with the core's.

    A declarative base of its own (its own ``MetaData`` and class registry): the core's tables are not reachable
    through it, and a plugin table named like one of the core's stops the schema upgrade.
    """

    type_annotation_map = _TYPES


class JobStatus:
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    #: stopped on purpose (the workspace left a vectorized plan): never retried
    CANCELLED = "cancelled"
    ACTIVE = (QUEUED, RUNNING)


class WorkspaceVectorization(Base):
    """One vectorization job of a workspace (its transitions: :mod:`pi_framework.sync.jobs`)."""

    __tablename__ = "workspace_vectorizations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED, index=True)
    live_sync_enabled: Mapped[bool] = mapped_column(default=False)
    progress_done: Mapped[int] = mapped_column(default=0)
    progress_total: Mapped[int | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    task_id: Mapped[str | None] = mapped_column(String(64), default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    #: the last time the job got further (the stuck-job reaper judges this); column ``heartbeat_at``
    progress_at: Mapped[datetime | None] = mapped_column("heartbeat_at", default=None)
    last_live_sync_at: Mapped[datetime | None] = mapped_column(default=None)
    #: last sign of life of the job's task: sent (queued), claimed or reporting (running); silent longer than
    #: ``PI_HEARTBEAT_TIMEOUT_SECONDS``, the job is sent again. ``progress_at`` only moves on real progress.
    #: Column ``dispatched_at`` (its name before it was named for what it means).
    alive_at: Mapped[datetime | None] = mapped_column("dispatched_at", default=None)


class SyncState(Base):
    """A cursor per (source, scope): a workspace's watermark, a docs repository's last SHA and ETag, ..."""

    __tablename__ = "sync_states"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(String(255), primary_key=True)
    cursor: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Lease(Base):
    """A named, expiring lock with a holder: only the holder renews or releases it (fencing).

    ``live:<workspace>`` is held by whatever writes a workspace (a live sync or a vectorization);
    ``queued:<workspace>`` says a live sync was sent and has not started yet.
    """

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(320), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(index=True)
    #: the fencing token of the current holding: new (and larger than every earlier one) on every acquire; a write
    #: carries it, so a holder that lost the lease cannot overwrite its successor (:mod:`pi_framework.db.fencing`)
    token: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class FenceCounter(Base):
    """The one counter fencing tokens and unfenced write versions are drawn from (a single row, ``name='fence'``)."""

    __tablename__ = "fence_counter"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class IndexedDocument(Base):
    """A document whose every chunk is confirmed in the sinks. Written only after the sinks confirmed."""

    __tablename__ = "indexed_documents"

    document_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    #: wide enough for every workspace id a source accepts (200 characters for push sources such as chats); widened on upgrade
    workspace_id: Mapped[str | None] = mapped_column(String(255))
    #: the source's own ``updated_at`` of the indexed version (stale when the source moved past it)
    source_updated_at: Mapped[datetime | None] = mapped_column(default=None)
    chunk_count: Mapped[int] = mapped_column(default=0)
    indexed_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())

    __table_args__ = (Index("ix_indexed_documents_ws_source", "workspace_id", "source"),)


class WithheldDocument(Base):
    """A document search must not return: its new version was refused and its old chunks could not be deleted either
    (OpenSearch's flood-stage block refuses deletes too). Gone once the document is written or removed."""

    __tablename__ = "withheld_documents"

    document_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    workspace_id: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    since: Mapped[datetime] = mapped_column(default=utcnow)


class IndexedChunk(Base):
    """One chunk in the sinks with the hash of what was embedded (text + chunking parameters + access fields; the model is
    the index generation's) and the hash of its metadata (``None``: recorded before metadata was hashed, or not
    confirmed yet)."""

    __tablename__ = "indexed_chunks"

    chunk_id: Mapped[str] = mapped_column(String(600), primary_key=True)
    document_id: Mapped[str] = mapped_column(String(512), index=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    metadata_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    workspace_id: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    indexed_at: Mapped[datetime] = mapped_column(default=utcnow)


class IndexGeneration(Base):
    """One index generation: the sinks' storage for one embedding model (:mod:`pi_framework.db.generations`).

    Exactly one is ``live`` (search reads it, every writer writes it); at most one is ``building`` (written by every
    writer too, and filled by copying the live one's chunks re-embedded). Rows are never deleted, so a name is never
    reused; a replaced generation goes ``retired`` and then ``dropped`` once its storage is removed.
    """

    __tablename__ = "index_generations"

    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    number: Mapped[int] = mapped_column(unique=True)
    embedder: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(255))
    #: the sinks' storage name (``Sink.for_generation``); ``""``: the sinks' own names (the first generation)
    storage: Mapped[str] = mapped_column(String(16), default="")
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    live_at: Mapped[datetime | None] = mapped_column(default=None)
    retired_at: Mapped[datetime | None] = mapped_column(default=None)
    #: the last copy failure while building (cleared when a copy goes through)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class GenerationScope(Base):
    """A workspace (``scope``; ``""``: the global chunks) a building generation must copy before it can go live.

    ``epoch`` moves whenever the scope is sent back to ``pending`` (a write to the building generation failed), so a
    copy that started before cannot mark it ``done`` (compare-and-set on the epoch)."""

    __tablename__ = "generation_scopes"

    generation: Mapped[str] = mapped_column(String(16), primary_key=True)
    scope: Mapped[str] = mapped_column(String(255), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    epoch: Mapped[int] = mapped_column(default=0)
    chunks: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
