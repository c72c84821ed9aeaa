"""The OpenSearch sink: one index per kind (``<prefix>-issues``, ``<prefix>-docs``, …), written through the bulk helper.

Reads (count, existing, search, delete by query) refresh the indices this process wrote to since its last
read, so a process always sees its own writes; other processes see them after OpenSearch's refresh
interval (1 s by default). Writes themselves never force a refresh: that would make many tiny segments.

Reads name their indices with an index expression (``<prefix>-*,-<prefix>-*-*``: this prefix's indices, not
another prefix's like ``pi-staging-issues``), so a search is one request, not a ``GET _alias`` first. A large write
is sent as ``bulk_concurrency`` bulk requests in flight at once: one request keeps one of the node's write threads
busy building the k-NN graph (most of the cost of a write) while the others wait.

A write or delete with a version uses external versioning (``version_type=external_gte``): the node refuses an
older version over a newer one (409, reported as a refused item), and a versioned delete leaves a tombstone with
its version for ``index.gc_deletes`` (:data:`~pi_framework.sinks.opensearch.queries.GC_DELETES`), during which an
older write of the deleted chunk is refused too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from loguru import logger
from opensearchpy import OpenSearch
from opensearchpy.exceptions import OpenSearchException, SerializationError
from opensearchpy.helpers import parallel_bulk, streaming_bulk
from opensearchpy.serializer import JSONSerializer

from pi_framework.contract.documents import Chunk
from pi_framework.contract.sinks import Hit, SearchQuery, SinkError, WriteResult
from pi_framework.redaction import redact_text, redact_url, url_secrets, userinfo_needs_encoding
from pi_framework.sinks.opensearch import queries

#: ids per request for deletes and existence checks (well under OpenSearch's 10,000 result window)
ID_BATCH = 1000
#: chunks per page when reading chunks back (vectors included: pages stay a few MB)
READ_PAGE = 500
#: statuses of a bulk item worth retrying: throttled or a shard momentarily unavailable
RETRYABLE = frozenset({429, 502, 503, 504})


def _describe(exc: OpenSearchException) -> str:
    """Type, status and the server's own reason (``str(TransportError)`` drops the reason), with the root cause when
    the reason alone says nothing (a search's "all shards failed" hides e.g. a query vector of the wrong dimension)."""
    info = getattr(exc, "info", None)
    error = info.get("error") if isinstance(info, dict) else None
    if isinstance(error, dict):
        text = f"{type(exc).__name__} {getattr(exc, 'status_code', '')}: {error.get('type')}: {error.get('reason')}"
        causes = [cause.get("reason") for cause in error.get("root_cause") or [] if isinstance(cause, dict)]
        if cause := next((cause for cause in causes if cause and cause != error.get("reason")), None):
            text += f" ({cause})"
        return text
    return f"{type(exc).__name__}: {exc}"


def _split_superseded(failed: dict[str, str], result: WriteResult) -> None:
    """Items the node refused with a version conflict (a newer version is stored) are superseded, the others failed."""
    for chunk_id, reason in failed.items():
        if "version_conflict_engine_exception" in reason:
            result.superseded.append(chunk_id)
        else:
            result.failed[chunk_id] = reason


def _item_reason(item: dict[str, Any]) -> str:
    error = item.get("error")
    if isinstance(error, dict):
        return f"HTTP {item.get('status')} {error.get('type')}: {error.get('reason')}"
    return f"HTTP {item.get('status')}: {error}"


class OpenSearchSink:
    """:class:`~pi_framework.contract.sinks.Sink` backed by an OpenSearch cluster (2.x or later, k-NN plugin)."""

    name = "opensearch"

    def __init__(
        self,
        url: str,
        prefix: str = "pi",
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        bulk_chunk_size: int = 500,
        bulk_concurrency: int = 2,
        knn_engine: str = "lucene",
    ) -> None:
        if knn_engine not in queries.KNN_ENGINES:
            raise SinkError(f"OPENSEARCH_KNN_ENGINE must be one of {', '.join(queries.KNN_ENGINES)}, not {knn_engine!r}")
        #: what :meth:`for_generation` builds another generation's sink from
        self._options: dict[str, Any] = {
            "url": url,
            "prefix": prefix,
            "timeout": timeout,
            "retries": retries,
            "backoff": backoff,
            "bulk_chunk_size": bulk_chunk_size,
            "bulk_concurrency": bulk_concurrency,
            "knn_engine": knn_engine,
        }
        self.prefix = prefix
        self.knn_engine = knn_engine
        self.safe_url = redact_url(url) or ""
        self._secrets = url_secrets(url)
        if userinfo_needs_encoding(url):  # the client would connect to a host or port made of a piece of the password
            raise SinkError(f"OPENSEARCH_URL {self.safe_url}: percent-encode / ? # @ in the user name and password")
        self.retries = retries
        self.backoff = backoff
        self.bulk_chunk_size = bulk_chunk_size
        self.bulk_concurrency = max(1, bulk_concurrency)
        self.client = OpenSearch(hosts=[url], timeout=timeout, max_retries=2, retry_on_timeout=True)
        self._serializer = JSONSerializer()
        self._dimension: int | None = None
        self._ready: set[str] = set()  # indices known to exist with the right vector dimension
        self._dirty: set[str] = set()  # indices written since this process last refreshed them

    # ------------------------------------------------------------------ errors
    def _scrub(self, text: str) -> str:
        return redact_text(text, self._secrets)

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn client errors (unreachable, timeout, 5xx, rejected request) into :class:`SinkError`, without credentials."""
        try:
            yield
        except OpenSearchException as exc:
            detail = self._scrub(_describe(exc))[:500]
            raise SinkError(f"OpenSearch at {self.safe_url}: {what} failed: {detail}") from None

    # ------------------------------------------------------------------ indices
    def _all_indices(self) -> str:
        """An index expression for every index of this prefix, resolved by the node (no request of its own): the names
        ``<prefix>-<something>`` minus those with another ``-`` after the prefix (another prefix's, like
        ``pi-staging-issues``; a kind suffix never has one)."""
        return f"{self.prefix}-*,-{self.prefix}-*-*"

    def _indices_of(self, kinds: Sequence[str] | None) -> str | None:
        """The index expression of *kinds* (every kind when empty or ``None``); ``None`` when no kind makes an index name.
        Indices that do not exist are skipped by the node (``ignore_unavailable``)."""
        if not kinds:
            return self._all_indices()
        names = set()
        for kind in kinds:
            try:
                names.add(queries.index_name(self.prefix, kind))
            except ValueError:  # a kind that gives no index name has no chunks
                continue
        return ",".join(sorted(names)) or None

    def _own_indices(self) -> list[str]:
        with self._errors("listing indices"):
            names = self.client.indices.get_alias(index=f"{self.prefix}-*")
        return sorted(name for name in names if queries.is_own_index(self.prefix, name))

    def ensure_ready(self, dimension: int) -> None:
        """Remember the vector dimension and check every existing index of this prefix against it."""
        with self._errors("reading mappings"):
            mappings = self.client.indices.get_mapping(index=f"{self.prefix}-*")
        own = {name: body.get("mappings", {}) for name, body in mappings.items() if queries.is_own_index(self.prefix, name)}
        problems = [queries.mapping_problem(name, mapping, dimension) for name, mapping in sorted(own.items())]
        problems = [problem for problem in problems if problem]
        if problems:
            raise SinkError("; ".join(problems))
        for name, mapping in sorted(own.items()):  # an index made by an older version gets the new filter fields
            if missing := queries.missing_fields(mapping):
                with self._errors(f"adding fields {', '.join(sorted(missing))} to {name}"):
                    self.client.indices.put_mapping(index=name, body={"properties": missing})
                logger.info("opensearch: added fields {} to index {}", ", ".join(sorted(missing)), name)
        self._dimension = dimension
        self._ready = set(own)

    def _prepare_index(self, kind: str) -> str:
        """The index for *kind*, created with the current dimension if absent (checked if another worker won the race)."""
        name = queries.index_name(self.prefix, kind)
        if name in self._ready:
            return name
        assert self._dimension is not None
        try:
            with self._errors(f"creating index {name}"):
                self.client.indices.create(index=name, body=queries.index_body(self._dimension, kind, self.knn_engine))
            logger.info("opensearch: created index {} ({} dimensions, {} engine)", name, self._dimension, self.knn_engine)
        except SinkError:
            if not self._index_exists(name):
                raise
            with self._errors(f"reading mapping of {name}"):
                mapping = self.client.indices.get_mapping(index=name)[name]["mappings"]
            if problem := queries.mapping_problem(name, mapping, self._dimension):
                raise SinkError(problem) from None
        self._ready.add(name)
        return name

    def _index_exists(self, name: str) -> bool:
        with self._errors(f"checking index {name}"):
            return bool(self.client.indices.exists(index=name))

    def _refresh(self) -> None:
        """Make this process's writes visible to its own reads."""
        if self._dirty:
            with self._errors("refreshing indices"):
                self.client.indices.refresh(index=",".join(sorted(self._dirty)), ignore_unavailable=True)
            self._dirty.clear()

    # ------------------------------------------------------------------ writes
    def _encode(self, chunk: Chunk) -> str:
        """The stored JSON of *chunk*, encoded once; ``ValueError`` says why it cannot be stored.

        Checked here rather than left to the server because NaN, an object JSON cannot encode or a lone
        surrogate would fail the whole bulk request instead of this one item.
        """
        queries.kind_suffix(chunk.kind)
        if problem := queries.vector_problem(chunk.vector, self._dimension or 0):
            raise ValueError(problem)
        try:
            body = json.dumps(
                queries.chunk_source(chunk),
                default=self._serializer.default,
                ensure_ascii=False,
                separators=(",", ":"),
                allow_nan=False,
            )
            body.encode("utf-8")
        except (TypeError, ValueError, UnicodeError, SerializationError) as exc:
            raise ValueError(f"cannot be encoded as JSON: {exc}") from None
        return body

    @staticmethod
    def _versioned(action: dict[str, Any], version: int | None) -> dict[str, Any]:
        if version is not None:
            action.update(version=version, version_type="external_gte")
        return action

    def write(self, chunks: Sequence[Chunk], version: int | None = None) -> WriteResult:
        result = WriteResult()
        if not chunks:
            return result
        if self._dimension is None:
            vectors = [chunk.vector for chunk in chunks if chunk.vector is not None]
            if not vectors:
                raise SinkError("opensearch: ensure_ready(dimension) must be called before writing chunks without vectors")
            self.ensure_ready(len(vectors[0]))
        actions: list[dict[str, Any]] = []
        for chunk in chunks:
            try:
                body = self._encode(chunk)
            except ValueError as exc:
                result.failed[chunk.id] = str(exc)
                continue
            index = self._prepare_index(chunk.kind)
            actions.append(self._versioned({"_op_type": "index", "_index": index, "_id": chunk.id, "_source": body}, version))
        written, failed = self._bulk(actions)
        self._dirty.update(action["_index"] for action in actions)
        _split_superseded(failed, result)
        confirmed = dict.fromkeys(chunk.id for chunk in chunks if chunk.id in written and chunk.id not in result.failed)
        result.written = list(confirmed)
        for chunk_id, reason in result.failed.items():
            logger.warning("opensearch: chunk {} not written: {}", chunk_id, reason)
        return result

    def _send(self, actions: list[dict[str, Any]]) -> Iterable[tuple[bool, dict[str, Any]]]:
        """One pass of the bulk helper; a request-level failure (unreachable, timeout, 5xx) raises :class:`SinkError`.

        More actions than one request holds go out ``bulk_concurrency`` requests at a time (each action's id is unique
        in a pass, so their order does not matter); the outcome of every item is read as before.
        """
        with self._errors("bulk request"):
            if self.bulk_concurrency > 1 and len(actions) > self.bulk_chunk_size:
                yield from parallel_bulk(
                    self.client,
                    actions,
                    thread_count=self.bulk_concurrency,
                    queue_size=self.bulk_concurrency,
                    chunk_size=self.bulk_chunk_size,
                    raise_on_error=False,
                    raise_on_exception=True,
                )
                return
            yield from streaming_bulk(
                self.client,
                actions,
                chunk_size=self.bulk_chunk_size,
                raise_on_error=False,
                raise_on_exception=True,
            )

    def _bulk(self, actions: list[dict[str, Any]]) -> tuple[set[str], dict[str, str]]:
        """Send *actions*; retry throttled/unavailable items with exponential backoff, a bounded number of times.

        Returns the ids that succeeded and the reason for each id that did not (mapping errors are not retried).
        Deleting an absent document counts as success.
        """
        written: set[str] = set()
        failed: dict[str, str] = {}
        pending = {(action["_index"], action["_id"]): action for action in actions}
        for attempt in range(self.retries + 1):
            retry: dict[tuple[str, str], dict[str, Any]] = {}
            for ok, response in self._send(list(pending.values())):
                op_type, item = next(iter(response.items()))
                key = (str(item.get("_index")), str(item.get("_id")))
                if ok or (op_type == "delete" and item.get("status") in (404, 409)):  # absent, or newer than this delete
                    written.add(key[1])
                elif item.get("status") in RETRYABLE and attempt < self.retries and key in pending:
                    retry[key] = pending[key]
                else:
                    failed[key[1]] = _item_reason(item)
            if not retry:
                break
            delay = self.backoff * 2**attempt
            logger.info("opensearch: retrying {} bulk item(s) in {:.1f}s", len(retry), delay)
            time.sleep(delay)
            pending = retry
        return written, failed

    def update_metadata(self, updates: Sequence[tuple[str, dict[str, Any]]], version: int | None = None) -> WriteResult:
        """Replace the metadata of stored chunks (and the fields made from it), nothing embedded.

        OpenSearch's update API cannot carry an external version, so each chunk is read back (a real-time ``mget``,
        vector included) and indexed again with the new metadata and ``external_gte``: with *version* that version
        (a chunk stored with a newer one is refused, before sending or by the node if it arrived meanwhile), without
        one the stored version (unchanged; refused if another writer got in between)."""
        result = WriteResult()
        wanted = dict(updates)
        indices = self._own_indices() if wanted else []
        if not indices:
            result.failed.update((chunk_id, "not in the index") for chunk_id in wanted)
            return result
        actions: list[dict[str, Any]] = []
        found: set[str] = set()
        ids = list(wanted)
        step = max(1, ID_BATCH // len(indices))
        for start in range(0, len(ids), step):
            docs = [{"_index": index, "_id": chunk_id} for chunk_id in ids[start : start + step] for index in indices]
            with self._errors("reading chunks for a metadata update"):
                response = self.client.mget(body={"docs": docs})
            for raw in response.get("docs", []):
                if not raw.get("found"):
                    continue
                chunk_id, stored = raw["_id"], int(raw.get("_version") or 0)
                found.add(chunk_id)
                if version is not None and stored > version:
                    result.superseded.append(chunk_id)
                    continue
                chunk = queries.chunk_from(raw)
                chunk.metadata = wanted[chunk_id]
                try:
                    body = self._encode(chunk)
                except ValueError as exc:
                    result.failed[chunk_id] = str(exc)
                    continue
                action = {"_op_type": "index", "_index": raw["_index"], "_id": chunk_id, "_source": body}
                actions.append(self._versioned(action, stored if version is None else version))
        for chunk_id in wanted.keys() - found:
            result.failed[chunk_id] = "not in the index"
        written, failed = self._bulk(actions)
        self._dirty.update(action["_index"] for action in actions)
        _split_superseded(failed, result)
        result.written = [chunk_id for chunk_id in wanted if chunk_id in written and chunk_id not in result.failed]
        return result

    # ------------------------------------------------------------------ deletes
    def delete_chunks(self, chunk_ids: Sequence[str], version: int | None = None) -> None:
        """Delete by id from every index of this prefix (a chunk id does not say its kind); absent ids are fine, and so
        are chunks stored with a version newer than *version*."""
        indices = self._own_indices()
        if not chunk_ids or not indices:
            return
        self._delete_ids([(index, chunk_id) for chunk_id in dict.fromkeys(chunk_ids) for index in indices], version)

    def _delete_ids(self, targets: list[tuple[str, str]], version: int | None) -> None:
        actions = [
            self._versioned({"_op_type": "delete", "_index": index, "_id": chunk_id}, version) for index, chunk_id in targets
        ]
        indices = {index for index, _ in targets}
        _, failed = self._bulk(actions)
        self._dirty.update(indices)
        if failed:
            sample = "; ".join(f"{chunk_id}: {reason}" for chunk_id, reason in list(failed.items())[:5])
            raise SinkError(f"opensearch: {len(failed)} delete(s) failed: {sample}")

    def delete_documents(self, document_ids: Sequence[str], version: int | None = None) -> int:
        """Every chunk of these documents, also chunks the ledger never recorded (an interrupted run); returns how many.

        With a *version*, the chunks are found by a search and deleted by id with that version (a delete by query
        cannot carry one), so a chunk stored with a newer version stays and the others leave tombstones."""
        ids = list(dict.fromkeys(document_ids))
        if not ids:
            return 0
        indices = self._all_indices()
        batches = [ids[start : start + ID_BATCH] for start in range(0, len(ids), ID_BATCH)]
        if version is None:
            return sum(
                self._delete_by_query(indices, {"terms": {"document_id": batch}}, "deleting documents") for batch in batches
            )
        self._refresh()
        removed = 0
        for batch in batches:
            targets = self._chunks_of(indices, batch)
            if targets:
                self._delete_ids(targets, version)
            removed += len(targets)
        return removed

    def _chunks_of(self, indices: str, document_ids: list[str]) -> list[tuple[str, str]]:
        """``(index, chunk id)`` of every chunk of *document_ids*, paged by ``search_after`` on the chunk id."""
        targets: list[tuple[str, str]] = []
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {
                "size": ID_BATCH,
                "_source": False,
                "query": {"terms": {"document_id": document_ids}},
                "sort": [{"chunk_id": "asc"}],
            }
            if after is not None:
                body["search_after"] = after
            hits = self._search(indices, body, "finding chunks of documents")
            targets.extend((hit["_index"], hit["_id"]) for hit in hits)
            if len(hits) < ID_BATCH:
                return targets
            after = hits[-1]["sort"]

    def delete_workspace(self, workspace_id: str, kind: str | None = None) -> int:
        return self._delete_by_query(
            self._scope_indices(kind), queries.scope_query(workspace_id, kind), f"deleting workspace {workspace_id}"
        )

    def _delete_by_query(self, indices: str | None, query: dict[str, Any], what: str) -> int:
        if not indices:
            return 0
        self._refresh()
        with self._errors(what):
            response = self.client.delete_by_query(
                index=indices, body={"query": query}, refresh=True, conflicts="proceed", ignore_unavailable=True
            )
        if response.get("failures"):
            raise SinkError(f"opensearch: {what} left failures: {response['failures'][:3]}")
        return int(response.get("deleted", 0))

    def read_chunks(
        self, *, documents: Sequence[str] | None = None, workspace_id: str | None = None, global_chunks: bool = False
    ) -> Iterator[Chunk]:
        """Stored chunks of *documents*, of *workspace_id* or the global ones, pages of :data:`READ_PAGE` by
        ``search_after`` on the chunk id (see the Sink protocol)."""
        if (documents is not None) + (workspace_id is not None) + global_chunks != 1:
            raise ValueError("read_chunks needs documents, a workspace_id or global_chunks (exactly one)")
        self._refresh()
        if documents is not None:
            ids = list(dict.fromkeys(documents))
            for start in range(0, len(ids), ID_BATCH):
                yield from self._read({"terms": {"document_id": ids[start : start + ID_BATCH]}})
            return
        if global_chunks:
            yield from self._read({"bool": {"must_not": [{"exists": {"field": "workspace_id"}}]}})
            return
        yield from self._read({"term": {"workspace_id": workspace_id}})

    def for_generation(self, generation: str) -> OpenSearchSink:
        """The same cluster and settings, indices ``<prefix>_<generation>-<kind>``: outside this prefix's index
        expression (``<prefix>-*``), so neither generation ever reads or deletes the other's chunks."""
        return OpenSearchSink(**{**self._options, "prefix": f"{self._options['prefix']}_{generation}"})

    def drop(self) -> None:
        """Delete every index of this prefix."""
        indices = self._own_indices()
        if indices:
            with self._errors(f"deleting indices {', '.join(indices)}"):
                self.client.indices.delete(index=",".join(indices), ignore_unavailable=True)
            logger.info("opensearch: deleted indices {}", ", ".join(indices))
        self._ready.clear()
        self._dirty.clear()

    def _read(self, query: dict[str, Any]) -> Iterator[Chunk]:
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {"size": READ_PAGE, "query": query, "sort": [{"chunk_id": "asc"}], "version": True}
            if after is not None:
                body["search_after"] = after
            hits = self._search(self._all_indices(), body, "reading chunks back")
            yield from (queries.chunk_from(hit) for hit in hits)
            if len(hits) < READ_PAGE:
                return
            after = hits[-1]["sort"]

    # ------------------------------------------------------------------ reads
    def _scope_indices(self, kind: str | None) -> str | None:
        return self._indices_of(None if kind is None else [kind])

    def count(self, workspace_id: str | None = None, kind: str | None = None) -> int:
        indices = self._scope_indices(kind)
        if not indices:
            return 0
        self._refresh()
        with self._errors("count"):
            response = self.client.count(
                index=indices, body={"query": queries.scope_query(workspace_id, kind)}, ignore_unavailable=True
            )
        return int(response["count"])

    def existing(self, chunk_ids: Sequence[str]) -> set[str]:
        indices = self._all_indices()
        ids = list(dict.fromkeys(chunk_ids))
        if not ids:
            return set()
        self._refresh()
        found: set[str] = set()
        for start in range(0, len(ids), ID_BATCH):
            batch = ids[start : start + ID_BATCH]
            body = {"size": len(batch), "_source": False, "query": {"ids": {"values": batch}}}
            found.update(raw["_id"] for raw in self._search(indices, body, "existence check"))
        return found

    def _search(self, indices: str, body: dict[str, Any], what: str) -> list[dict[str, Any]]:
        with self._errors(what):
            response = self.client.search(index=indices, body=body, ignore_unavailable=True)
        return response["hits"]["hits"]

    def _query_indices(self, query: SearchQuery) -> str | None:
        return self._indices_of(query.kinds)

    def search_text(self, query: SearchQuery) -> list[Hit]:
        indices = self._query_indices(query)
        if not query.text.strip() or not indices or query.limit <= 0:
            return []
        self._refresh()
        return [queries.hit_from(raw) for raw in self._search(indices, queries.text_query_body(query), "text search")]

    def search_vector(self, query: SearchQuery) -> list[Hit]:
        indices = self._query_indices(query)
        if query.vector is None or not indices or query.limit <= 0:
            return []
        self._refresh()
        body = queries.knn_query_body(query.vector, query.limit, queries.search_filters(query))
        return [queries.hit_from(raw) for raw in self._search(indices, body, "vector search")]

    # ------------------------------------------------------------------ lifecycle
    def health(self) -> dict[str, Any]:
        with self._errors("health check"):
            cluster = self.client.cluster.health()
            indices = {name: int(self.client.count(index=name)["count"]) for name in self._own_indices()}
        return {"url": self.safe_url, "status": cluster.get("status"), "indices": indices}

    def close(self) -> None:
        self.client.close()
