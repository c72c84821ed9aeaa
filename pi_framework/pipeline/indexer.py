"""The indexer: documents in, chunks embedded and written to every sink, the ledger updated after the sinks confirmed.

Documents are streamed and processed in groups of about ``4 × PI_EMBEDDING_BATCH_SIZE`` chunks: one
ledger read per group, unchanged chunks skipped, changed chunks embedded in batches and written to
every sink, chunks that no longer exist deleted, and then one ledger transaction. A document whose
chunks any sink refused is logged with its id and reason and left out of the ledger (its
``IndexedDocument`` row is removed), so the next run processes it again; the rest of the group goes through.

Two kinds of failure are kept apart. A sink that *refuses an item* (``WriteResult.failed``) fails that
document only. A sink that *fails as a whole* (it raises: unreachable, 5xx after its retries, timeout)
aborts the run with :class:`SinkOutage`: nothing of the group is recorded, and the caller keeps its
cursor and job state where they were so the whole run is retried, instead of recording good documents
as bad input. Chunk ids are written ahead to the ledger before any sink sees them, so a crash between
the sink write and the ledger commit never leaves a chunk the ledger does not know (see
:meth:`~pi_framework.pipeline.ledger.Ledger.write_ahead`).

**Fenced.** An indexer built with a :class:`~pi_framework.db.fencing.Fence` (the workspace's write lease) writes
every chunk and every delete with the fence's token as its version, checks the fence before the sinks see
anything (with the write-ahead) and again in the ledger transaction, and stops with
:class:`~pi_framework.db.fencing.LeaseLost` as soon as a newer holder took over. Sinks never let a smaller version
replace or delete a larger one, so a writer that stalled past its lease cannot put an older version back; what it
wrote before it learnt it lost the lease is deleted again (guarded by its own version, so a successor's chunks
stay). Without a fence each run writes with a fresh version from the same counter.

**Metadata alone.** A chunk whose content hash is unchanged but whose metadata hash moved (a work item's state,
priority, labels or assignees changed; see :mod:`~pi_framework.pipeline.hashing`) is not embedded: every sink gets a
partial update (``Sink.update_metadata``, versioned like a write) and the ledger records the new metadata hash. A chunk
a sink cannot update that way (it does not hold it) is written in full instead.

**Fail closed.** A document whose new version cannot be written (embedding failed, a sink refused a chunk, it
could not be prepared) is deleted from every sink — or, when a sink refuses that too, withheld from search — and
left out of the ledger: no older version, with older access fields, is returned while it waits for its retry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

from loguru import logger

from pi_framework import metrics, runtime
from pi_framework.contract.contributions import Embedder
from pi_framework.contract.documents import Chunk, Document, chunk_id
from pi_framework.contract.sinks import Sink, SinkError, WriteResult
from pi_framework.db import Database, get_database
from pi_framework.db.fencing import Fence, LeaseLost, next_token
from pi_framework.pipeline.chunking import ChunkingParams, split
from pi_framework.pipeline.hashing import content_hash, metadata_hash
from pi_framework.pipeline.ledger import Ledger, LedgerEntry, LedgerUpdate, same_instant
from pi_framework.pipeline.normalise import normalise, to_str
from pi_framework.settings import Settings, get_settings

_MAX_ID_LENGTH = 512
#: documents per group at most, whatever their size (bounds the ledger read and the memory held)
_MAX_GROUP_DOCUMENTS = 500


class SinkOutage(SinkError):
    """A sink failed as a whole (it raised): the run stops, nothing of the group is recorded, the caller retries."""


def _outage(sink: Sink, action: str, exc: Exception) -> SinkOutage:
    return SinkOutage(f"sink {sink.name}: {action} failed: {type(exc).__name__}: {exc}")


def _tally(sink: str, result: WriteResult, chunks: list[Chunk], problems: dict[str, str], what: str) -> None:
    """Note in *problems* each of *chunks* the sink neither confirmed nor left to a newer version (superseded)."""
    confirmed = set(result.written) | set(result.superseded)
    for chunk in chunks:
        if chunk.id in result.failed:
            problems.setdefault(chunk.id, f"sink {sink}: {result.failed[chunk.id]}")
        elif chunk.id not in confirmed:
            problems.setdefault(chunk.id, f"sink {sink} did not confirm {what}")


@dataclass
class IndexStats:
    """What one :meth:`Indexer.index` call did. ``failed`` maps document id to the reason it is not indexed."""

    documents_seen: int = 0
    documents_indexed: int = 0
    documents_unchanged: int = 0
    documents_deleted: int = 0
    chunks_embedded: int = 0
    chunks_deleted: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    #: chunks whose metadata alone changed: updated in place in every sink, nothing embedded
    chunks_updated: int = 0
    #: documents with no text at all (no title, empty body): their old chunks are removed, they are recorded empty
    documents_empty: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class _Plan:
    """One document of a group: its chunks now, and what must change in the sinks."""

    document: Document
    chunks: list[Chunk]
    to_write: list[Chunk] = field(default_factory=list)
    #: same content, other metadata: a partial update in every sink, no embedding
    to_update: list[Chunk] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    failure: str | None = None
    #: a sink holds a newer version of some of its chunks (a newer writer won): left to that writer, not recorded
    superseded: bool = False


class Indexer:
    """Indexes documents into the configured sinks; safe to use from several processes at once."""

    def __init__(
        self,
        sinks: Sequence[Sink] | None = None,
        embedder: Embedder | None = None,
        database: Database | None = None,
        settings: Settings | None = None,
        fence: Fence | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.fence = fence
        #: the version this run writes and deletes with: the fence's token, or a fresh one per unfenced call
        self._version: int | None = None
        self._sinks = list(sinks) if sinks is not None else None
        self._embedder = embedder
        self.ledger = Ledger(database or get_database(self.settings))
        self.chunking = ChunkingParams(
            self.settings.PI_CHUNK_TOKENS, self.settings.PI_CHUNK_OVERLAP, self.settings.PI_MAX_CHUNKS_PER_DOCUMENT
        )
        #: ``id()`` of the sinks whose indices this indexer made sure of
        self._ready: set[int] = set()
        #: the sinks of the group (or delete) in progress: one reading of :attr:`sinks` for all of its steps
        self._group_sinks: list[Sink] = []

    # -------------------------------------------------------------- lazily built parts
    @property
    def sinks(self) -> list[Sink]:
        """The sinks given, or what the process writes now (:func:`~pi_framework.runtime.write_sinks`: the live index
        generation's sinks, and mirrors into a generation being built), asked again for every group."""
        return self._sinks if self._sinks is not None else runtime.write_sinks()

    @property
    def embedder(self) -> Embedder:
        return self._embedder if self._embedder is not None else runtime.get_embedder()

    def _ensure_ready(self) -> list[Sink]:
        """The sinks of this group, their indices created; a sink holding vectors of another dimension raises (never
        silent garbage)."""
        sinks = self.sinks
        for sink in sinks:
            if id(sink) not in self._ready:
                sink.ensure_ready(self.embedder.dimension)
                self._ready.add(id(sink))
        return sinks

    # -------------------------------------------------------------- public API
    def _begin(self) -> int:
        """The version of the call starting now (see the module docstring)."""
        if self.fence is not None:
            self._version = self.fence.token
        else:
            with self.ledger.database.session() as session:
                self._version = next_token(session)
        return self._version

    def index(self, documents: Iterable[Document], progress: Callable[[IndexStats], None] | None = None) -> IndexStats:
        """Index (or delete, when ``deleted=True``) every document; *progress* is called after each group."""
        stats = IndexStats()
        self._begin()
        group: list[_Plan] = []
        group_ids: set[str] = set()
        pending_chunks = 0
        flush_at = self.settings.PI_EMBEDDING_BATCH_SIZE * 4
        for position, document in enumerate(documents):
            stats.documents_seen += 1
            plan = self._plan(document, position, stats)
            if plan is None:
                continue
            if plan.document.id in group_ids:  # the same document twice in a row: keep the order of events
                self._flush(group, stats, progress)
                group, group_ids, pending_chunks = [], set(), 0
            group.append(plan)
            group_ids.add(plan.document.id)
            pending_chunks += len(plan.chunks)
            if pending_chunks >= flush_at or len(group) >= _MAX_GROUP_DOCUMENTS:
                self._flush(group, stats, progress)
                group, group_ids, pending_chunks = [], set(), 0
        if group:
            self._flush(group, stats, progress)
        metrics.indexed(stats)
        return stats

    def delete_documents(self, document_ids: Iterable[str]) -> int:
        """Remove documents from every sink and then from the ledger; returns how many the ledger held."""
        ids = list(dict.fromkeys(document_ids))
        if not ids:
            return 0
        self._begin()
        self.ledger.check(self.fence)
        self._group_sinks = self.sinks
        self._delete_from_sinks(ids)
        return self.ledger.remove_documents(ids, self.fence)

    def delete_workspace(self, workspace_id: str) -> int:
        """Remove every chunk of *workspace_id* from every sink and the ledger; returns the documents the ledger held."""
        if not workspace_id:
            raise ValueError("delete_workspace needs a workspace id (global content has none and is never removed this way)")
        for sink in self.sinks:
            metrics.sink_call(sink.name, "delete_workspace", sink.delete_workspace, workspace_id)
        return self.ledger.remove_workspace(workspace_id)

    def indexed_ids(self, workspace_id: str | None, source: str) -> Iterator[str]:
        """Ids of the documents of *source* recorded in the ledger for *workspace_id* (``None``: global), streamed."""
        return self.ledger.document_ids(workspace_id, source)

    # -------------------------------------------------------------- planning
    def _fail(self, stats: IndexStats, document_id: str, reason: str) -> None:
        logger.warning("index: document {} not indexed: {}", document_id, reason)
        stats.failed[document_id] = reason

    def _plan(self, document: Document, position: int, stats: IndexStats) -> _Plan | None:
        """Validate, normalise and chunk one document; ``None`` (and a logged failure) if it cannot be indexed."""
        document_id = getattr(document, "id", None)
        if not isinstance(document_id, str) or not document_id.strip():
            self._fail(stats, f"<document #{position} without id>", f"document has no id ({type(document).__name__})")
            return None
        if len(document_id) > _MAX_ID_LENGTH or to_str(document_id) != document_id or "\x00" in document_id:
            self._fail(stats, document_id[:_MAX_ID_LENGTH], f"invalid id (longer than {_MAX_ID_LENGTH} or not valid text)")
            return None
        if not document.source or not document.kind:
            self._fail(stats, document_id, "document has no source or kind")
            return None
        if document.deleted:
            return _Plan(document, [])
        try:
            return _Plan(document, self.chunks_of(document))
        except Exception as exc:  # noqa: BLE001 - one bad document must not fail the batch
            # still planned: whatever the index holds of its older version is removed (fail closed)
            return _Plan(document, [], failure=f"could not be prepared: {type(exc).__name__}: {exc}")

    def _capped(self, document: Document) -> tuple[str, str]:
        """Title and body cut at ``PI_MAX_DOCUMENT_CHARS`` characters each, before any normalisation runs.

        Normalising and chunking are linear in the text, so this bounds the time a document can hold a worker
        (a soft time limit cannot interrupt a regex); the cut is logged once, naming the document.
        """
        limit = self.settings.PI_MAX_DOCUMENT_CHARS
        title, body = to_str(document.title), to_str(document.body)
        if len(title) > limit or len(body) > limit:
            logger.warning(
                "index: document {} is longer than PI_MAX_DOCUMENT_CHARS={} (title {}, body {} characters): "
                "only its first {} characters of each are indexed",
                document.id,
                limit,
                len(title),
                len(body),
                limit,
            )
        return title[:limit], body[:limit]

    def chunks_of(self, document: Document) -> list[Chunk]:
        """The chunks, with content hashes and without vectors, that *document* is indexed as."""
        title, body = self._capped(document)
        title = normalise(title, "text").replace("\n", " ")
        body = normalise(body, document.body_format)
        windows, truncated = split(title, body, self.embedder, self.chunking)
        if truncated:
            logger.warning(
                "index: document {} truncated to its first {} chunks (PI_MAX_CHUNKS_PER_DOCUMENT)",
                document.id,
                self.chunking.max_chunks,
            )
        described = self.chunking.describe()
        metadata = metadata_hash(document)
        return [
            Chunk(
                id=chunk_id(document.id, window.index),
                document_id=document.id,
                index=window.index,
                text=window.text,
                content_hash=content_hash(window.text, document, described),
                source=document.source,
                kind=document.kind,
                workspace_id=document.workspace_id,
                title=title,
                key=document.key,
                url=document.url,
                project_ids=list(document.project_ids),
                owner_id=document.owner_id,
                metadata=dict(document.metadata),
                metadata_hash=metadata,
            )
            for window in windows
        ]

    # -------------------------------------------------------------- one group
    def _flush(self, group: list[_Plan], stats: IndexStats, progress: Callable[[IndexStats], None] | None) -> None:
        self._group_sinks = self._ensure_ready()
        ledger = self.ledger.lookup([plan.document.id for plan in group])
        update = LedgerUpdate()
        removals = [plan for plan in group if plan.document.deleted]
        upserts = [plan for plan in group if not plan.document.deleted]
        for plan in upserts:
            if plan.failure is None:
                self._diff(plan, ledger.get(plan.document.id, LedgerEntry()), update, stats)
        self._refresh_metadata([plan for plan in upserts if plan.to_update and plan.failure is None], stats)
        self._embed([plan for plan in upserts if plan.to_write and plan.document.embed and plan.failure is None], stats)
        writable = [plan for plan in upserts if plan.to_write and plan.failure is None]
        written = [chunk.id for plan in writable for chunk in plan.to_write]
        self.ledger.write_ahead([chunk for plan in writable for chunk in plan.to_write], self.fence)
        try:
            self._write(writable)
            self._remove_orphans([plan for plan in upserts if plan.orphans and plan.failure is None])
            self._remove(removals, ledger, update, stats)
            self._withdraw([plan for plan in upserts if plan.failure is not None])
            for plan in upserts:
                if plan.superseded and plan.failure is None:  # a newer writer holds it: its commit records it
                    stats.documents_unchanged += 1
                elif plan.to_write or plan.to_update or plan.orphans or plan.failure:
                    self._record(plan, update, stats)
            self.ledger.apply(update, self.fence)
        except LeaseLost:
            self._undo(written)
            raise
        metrics.indexed(stats)
        if progress is not None:
            progress(stats)

    def _diff(self, plan: _Plan, entry: LedgerEntry, update: LedgerUpdate, stats: IndexStats) -> None:
        """Decide what must be embedded and deleted; record unchanged documents straight away."""
        current = {chunk.id for chunk in plan.chunks}
        plan.to_write = [chunk for chunk in plan.chunks if entry.hashes.get(chunk.id) != chunk.content_hash]
        plan.to_update = [
            chunk
            for chunk in plan.chunks
            if entry.hashes.get(chunk.id) == chunk.content_hash and entry.metadata_hashes.get(chunk.id) != chunk.metadata_hash
        ]
        plan.orphans = [chunk for chunk in entry.hashes if chunk not in current]
        if not plan.chunks:
            stats.documents_empty += 1
            logger.warning("index: document {} has no text to index (no title, empty body): recorded empty", plan.document.id)
        if plan.to_write or plan.to_update or plan.orphans:
            return
        if entry.recorded:
            stats.documents_unchanged += 1
            if plan.document.updated_at is not None and not same_instant(plan.document.updated_at, entry.source_updated_at):
                update.touched_documents.append(plan.document)
        else:  # every chunk already confirmed (an earlier run failed after writing them): just record the document
            update.confirmed_documents.append((plan.document, len(plan.chunks)))
            stats.documents_indexed += 1

    def _refresh_metadata(self, plans: list[_Plan], stats: IndexStats) -> None:
        """Partial updates: the new metadata of unchanged chunks, in every sink, nothing embedded.

        A chunk any sink did not confirm (it does not hold it, or refused the update) moves to the chunks written in
        full, so the group's usual write (and its failure handling) takes it."""
        chunks = [chunk for plan in plans for chunk in plan.to_update]
        if not chunks:
            return
        self.ledger.check(self.fence)  # as the write-ahead does: a writer that lost its lease changes nothing
        updates = [(chunk.id, chunk.metadata) for chunk in chunks]
        refused: dict[str, str] = {}
        for sink in self._group_sinks:
            try:
                result = metrics.sink_call(sink.name, "update_metadata", sink.update_metadata, updates, version=self._version)
            except Exception as exc:
                raise _outage(sink, "metadata update", exc) from exc
            _tally(sink.name, result, chunks, refused, "the metadata update")
            for plan in plans:
                plan.superseded = plan.superseded or any(chunk.id in result.superseded for chunk in plan.to_update)
        for plan in plans:
            again = [chunk for chunk in plan.to_update if chunk.id in refused]
            if again:
                logger.info(
                    "index: document {}: {} chunk(s) written in full, their metadata update was not confirmed ({})",
                    plan.document.id,
                    len(again),
                    refused[again[0].id],
                )
                plan.to_write.extend(again)
                plan.to_update = [chunk for chunk in plan.to_update if chunk.id not in refused]
            stats.chunks_updated += len(plan.to_update)

    def _embed(self, plans: list[_Plan], stats: IndexStats) -> None:
        """Embed the chunks of *plans* in one call; if that fails, document by document to isolate the culprit."""
        if not plans:
            return
        try:
            self._embed_into([chunk for plan in plans for chunk in plan.to_write])
        except Exception as exc:  # noqa: BLE001 - retried per document below
            logger.warning("index: embedding a group failed ({}: {}); retrying document by document", type(exc).__name__, exc)
            for plan in plans:
                try:
                    self._embed_into(plan.to_write)
                except Exception as error:  # noqa: BLE001 - this document fails, the others go on
                    plan.failure = f"embedding failed: {type(error).__name__}: {error}"
                    continue
                stats.chunks_embedded += len(plan.to_write)
        else:
            stats.chunks_embedded += sum(len(plan.to_write) for plan in plans)

    def _embed_into(self, chunks: list[Chunk]) -> None:
        vectors = metrics.embedded(self.embedder.embed, [chunk.text for chunk in chunks])
        for chunk, vector in zip(chunks, vectors, strict=True):
            chunk.vector = vector.tolist()

    def _write(self, plans: list[_Plan]) -> None:
        """Write to every sink; a chunk counts only when every sink confirmed it."""
        chunks = [chunk for plan in plans for chunk in plan.to_write]
        if not chunks:
            return
        problems: dict[str, str] = {}
        for sink in self._group_sinks:
            try:
                result = metrics.sink_call(sink.name, "write", sink.write, chunks, version=self._version)
            except Exception as exc:
                raise _outage(sink, "write", exc) from exc
            _tally(sink.name, result, chunks, problems, "the write")
            for plan in plans:
                plan.superseded = plan.superseded or any(chunk.id in result.superseded for chunk in plan.to_write)
        for plan in plans:
            reasons = [problems[chunk.id] for chunk in plan.to_write if chunk.id in problems]
            if reasons:
                plan.failure = f"{len(reasons)} of {len(plan.to_write)} chunk(s) not written: {reasons[0]}"
            for chunk in plan.to_write:
                chunk.vector = None  # free the memory as soon as the sinks have it

    def _remove_orphans(self, plans: list[_Plan]) -> None:
        orphans = [orphan for plan in plans for orphan in plan.orphans]
        if not orphans:
            return
        for sink in self._group_sinks:
            try:
                metrics.sink_call(sink.name, "delete_chunks", sink.delete_chunks, orphans, version=self._version)
            except Exception as exc:
                raise _outage(sink, "deleting old chunks", exc) from exc

    def _delete_from_sinks(self, document_ids: list[str]) -> None:
        """Delete documents from every sink by document id (``Sink.delete_documents``).

        Deleting by document id also removes chunks an interrupted run wrote but never recorded.
        """
        for sink in self._group_sinks:
            try:
                metrics.sink_call(sink.name, "delete_documents", sink.delete_documents, document_ids, version=self._version)
            except Exception as exc:
                raise _outage(sink, "delete", exc) from exc

    def _withdraw(self, plans: list[_Plan]) -> None:
        """Fail closed: documents whose new version could not be written lose what the index holds of them.

        A sink may refuse the delete too (OpenSearch's flood-stage block ``read_only_allow_delete`` refuses document
        deletes as well as writes, whatever its name says): then the documents are *withheld* — search drops their
        hits — until a later run writes or removes them. The rest of the group goes on either way."""
        if not plans:
            return
        try:
            self._delete_from_sinks([plan.document.id for plan in plans])
        except SinkOutage as exc:
            logger.warning("index: {} refused document(s) withheld from search: {}", len(plans), exc)
            self.ledger.withhold({plan.document.id: (plan.document.workspace_id, str(exc)) for plan in plans})

    def _undo(self, chunk_ids: list[str]) -> None:
        """After a lost lease: delete what this run wrote, guarded by its own version (a successor's chunks stay).

        Best effort: if this fails too, the chunks are still in the ledger as written ahead, and the successor's
        next comparison removes or rewrites them."""
        if not chunk_ids:
            return
        for sink in self._group_sinks:
            try:
                sink.delete_chunks(chunk_ids, version=self._version)
            except Exception as exc:  # noqa: BLE001 - the lease is lost either way; the ledger still knows them
                logger.warning(
                    "index: could not take back {} chunk(s) from sink {} after losing the lease: {}",
                    len(chunk_ids),
                    sink.name,
                    exc,
                )

    def _remove(self, plans: list[_Plan], ledger: dict[str, LedgerEntry], update: LedgerUpdate, stats: IndexStats) -> None:
        if not plans:
            return
        ids = [plan.document.id for plan in plans]
        self._delete_from_sinks(ids)
        update.removed_documents.extend(ids)
        stats.documents_deleted += len(ids)
        stats.chunks_deleted += sum(len(ledger.get(document_id, LedgerEntry()).hashes) for document_id in ids)

    def _record(self, plan: _Plan, update: LedgerUpdate, stats: IndexStats) -> None:
        """Ledger changes for a document that was written: recorded if all went through, else left to retry."""
        if plan.failure is None:
            update.confirmed_chunks.extend(plan.to_write)
            update.refreshed_chunks.extend(plan.to_update)
            update.removed_chunks.extend(plan.orphans)
            update.confirmed_documents.append((plan.document, len(plan.chunks)))
            stats.documents_indexed += 1
            stats.chunks_deleted += len(plan.orphans)
            return
        self._fail(stats, plan.document.id, plan.failure)
        # withdrawn from every sink (fail closed): the ledger forgets it, so it is missing, hence pending, until a
        # retry indexes it
        update.unrecorded_documents.append(plan.document.id)
