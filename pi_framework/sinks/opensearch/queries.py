"""Pure builders for the OpenSearch sink: index names, mapping, documents, query bodies, hits.

Nothing here talks to a cluster, so every request body the sink sends can be unit-tested for its
exact shape; tests/test_opensearch_sink.py runs them against a real node with the k-NN plugin.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from pi_framework.contract.documents import Chunk
from pi_framework.contract.sinks import CREATED_BY, FILTER_KEYS, Hit, SearchQuery, filter_values
from pi_framework.sinks.stop_words import without_stop_words

VECTOR_FIELD = "vector"
TEXT_FIELDS = ("title^2", "text", "key^3")
_KIND_UNSAFE = re.compile(r"[^a-z0-9_]+")
#: k-NN engines a new index may use (``OPENSEARCH_KNN_ENGINE``): lucene is pure Java and works wherever the k-NN plugin
#: is installed; faiss needs the plugin's native libraries (the full distribution has them, a Maven-built node does not)
KNN_ENGINES = ("lucene", "faiss")

KEYWORD = {"type": "keyword"}
STORED_ONLY = {"type": "keyword", "index": False}


def kind_suffix(kind: str) -> str:
    """The index-name part for *kind*: lower case, ``[a-z0-9_]`` only.

    No ``-`` is allowed, so ``pi-staging-issues`` is never mistaken for an index of prefix ``pi``.
    """
    suffix = _KIND_UNSAFE.sub("_", kind.lower()).strip("_")
    if not suffix:
        raise ValueError(f"kind {kind!r} gives an empty index name")
    return suffix


def index_name(prefix: str, kind: str) -> str:
    return f"{prefix}-{kind_suffix(kind)}"


def is_own_index(prefix: str, name: str) -> bool:
    """Whether *name* is one of this prefix's per-kind indices (and not another prefix's, like ``pi-staging-…``)."""
    suffix = name.removeprefix(f"{prefix}-")
    return suffix != name and bool(suffix) and _KIND_UNSAFE.search(suffix) is None


#: how long a versioned delete's tombstone keeps refusing older writes of the deleted chunk (OpenSearch's default is
#: 60 s): well past a lease (``PI_LEASE_SECONDS``) plus a bulk request's timeout and retries, so a writer that stalled
#: past its lease cannot bring back a chunk its successor deleted
GC_DELETES = "10m"


def index_body(dimension: int, kind: str, engine: str = "lucene") -> dict[str, Any]:
    """Settings and mapping of one per-kind index: BM25 text, keyword filters and an HNSW cosine vector of *engine*.

    ``index.knn: true`` makes the k-NN plugin build the vector field's graph; both engines answer the filtered
    ``knn`` query of :func:`knn_query_body` (efficient filtering).
    """
    if engine not in KNN_ENGINES:
        raise ValueError(f"k-NN engine must be one of {', '.join(KNN_ENGINES)}, not {engine!r}")
    return {
        "settings": {"index": {"knn": True, "gc_deletes": GC_DELETES}},
        "mappings": {
            "dynamic": "strict",
            "_meta": {"pi_framework": {"kind": kind}},
            "properties": {
                "chunk_id": KEYWORD,
                "document_id": KEYWORD,
                "chunk_index": {"type": "integer"},
                "kind": KEYWORD,
                "source": KEYWORD,
                "workspace_id": KEYWORD,
                "project_ids": KEYWORD,
                "owner_id": KEYWORD,
                CREATED_BY: KEYWORD,
                # Plane's filters (state, priority, labels, ...), copied from the metadata: see chunk_source
                **dict.fromkeys(FILTER_KEYS, KEYWORD),
                "key": KEYWORD,
                "title": {"type": "text"},
                "text": {"type": "text"},
                "url": STORED_ONLY,
                "content_hash": STORED_ONLY,
                "metadata": {"type": "object", "enabled": False},
                VECTOR_FIELD: {
                    "type": "knn_vector",
                    "dimension": dimension,
                    "method": {"name": "hnsw", "engine": engine, "space_type": "cosinesimil"},
                },
            },
        },
    }


def missing_fields(mapping: dict[str, Any]) -> dict[str, Any]:
    """Fields of the current mapping that an existing index lacks (added with a put-mapping; new fields only, so an
    index created by an older version takes the filter fields of this one)."""
    present = mapping.get("properties", {})
    wanted = index_body(1, "")["mappings"]["properties"]
    return {name: body for name, body in wanted.items() if name not in present and name != VECTOR_FIELD}


def mapping_problem(index: str, mapping: dict[str, Any], dimension: int) -> str | None:
    """Why an existing index cannot take vectors of *dimension* (``None`` when it can)."""
    field = mapping.get("properties", {}).get(VECTOR_FIELD)
    if field is None or field.get("type") != "knn_vector":
        return f"index {index!r} has no knn_vector field {VECTOR_FIELD!r}; it was not created by pi-framework"
    found = field.get("dimension")
    if found is not None and int(found) != dimension:
        return (
            f"index {index!r} holds {found}-dimensional vectors but the embedder makes {dimension}; "
            f"delete the index (it is rebuilt on the next sync) or set another OPENSEARCH_INDEX_PREFIX"
        )
    return None


def vector_problem(vector: Sequence[float] | None, dimension: int) -> str | None:
    """Why *vector* cannot be written (wrong length, NaN/inf); checked before sending because
    NaN is not valid JSON and would fail the whole bulk request instead of one item."""
    if vector is None:
        return None
    if len(vector) != dimension:
        return f"vector has {len(vector)} dimensions, index expects {dimension}"
    if not all(math.isfinite(value) for value in vector):
        return "vector contains NaN or infinity"
    return None


def chunk_source(chunk: Chunk) -> dict[str, Any]:
    """The stored document of *chunk*. Global and public chunks have no ``workspace_id`` / ``owner_id`` field; the
    ``created_by`` metadata (Plane's guest rule) and the :data:`FILTER_KEYS` of the metadata (Plane's filters) are also
    keyword fields, absent when unknown."""
    source: dict[str, Any] = {
        "chunk_id": chunk.id,
        "document_id": chunk.document_id,
        "chunk_index": chunk.index,
        "kind": chunk.kind,
        "source": chunk.source,
        "title": chunk.title,
        "text": chunk.text,
        "content_hash": chunk.content_hash,
        "project_ids": list(chunk.project_ids),
        "metadata": chunk.metadata,
    }
    created_by = chunk.metadata.get(CREATED_BY)
    optional = {
        "workspace_id": chunk.workspace_id,
        "owner_id": chunk.owner_id,
        CREATED_BY: None if created_by is None else str(created_by),
        "key": chunk.key,
        "url": chunk.url,
    }
    source.update({name: value for name, value in optional.items() if value is not None})
    source.update({key: values for key in FILTER_KEYS if (values := filter_values(chunk.metadata, key))})
    if chunk.vector is not None:
        source[VECTOR_FIELD] = [float(value) for value in chunk.vector]
    return source


def _missing(field: str) -> dict[str, Any]:
    return {"bool": {"must_not": {"exists": {"field": field}}}}


def _any_of(*clauses: dict[str, Any]) -> dict[str, Any]:
    return {"bool": {"should": list(clauses), "minimum_should_match": 1}}


def project_filter(query: SearchQuery) -> dict[str, Any] | None:
    """Project membership: no projects, or one the user reads in full, or one where they are a guest and the creator."""
    if query.projects is None:
        return None
    allowed: list[dict[str, Any]] = [_missing("project_ids")]
    if query.projects:
        allowed.append({"terms": {"project_ids": sorted(query.projects)}})
    if query.guest_projects and query.user_id is not None:
        allowed.append(
            {
                "bool": {
                    "filter": [{"terms": {"project_ids": sorted(query.guest_projects)}}, {"term": {CREATED_BY: query.user_id}}]
                }
            }
        )
    return allowed[0] if len(allowed) == 1 else _any_of(*allowed)


def search_filters(query: SearchQuery) -> list[dict[str, Any]]:
    """Filters every search carries: the workspace (or global content only, for a non-member), privacy, projects,
    and optional kinds and Plane's filters (:class:`~pi_framework.contract.sinks.Filters`)."""
    if query.workspace_member:
        workspace = _any_of({"term": {"workspace_id": query.workspace_id}}, _missing("workspace_id"))
    else:
        workspace = _missing("workspace_id")
    if query.user_id is None:
        privacy = _missing("owner_id")
    else:
        privacy = _any_of(_missing("owner_id"), {"term": {"owner_id": query.user_id}})
    filters = [workspace, privacy]
    if (projects := project_filter(query)) is not None:
        filters.append(projects)
    if query.kinds:
        filters.append({"terms": {"kind": list(query.kinds)}})
    if query.filters is not None:  # Plane's filters: per field, one of its keys holds one of the values
        for keys, values in query.filters.clauses():
            clauses = [{"terms": {key: values}} for key in keys]
            filters.append(clauses[0] if len(clauses) == 1 else _any_of(*clauses))
    return filters


_NO_VECTOR = {"excludes": [VECTOR_FIELD]}


def text_query_body(query: SearchQuery) -> dict[str, Any]:
    """BM25 over title, text and key, inside the mandatory filters; the query's stop words are left out (as the
    embedded sink does: see :mod:`pi_framework.sinks.stop_words`), so "how do I ..." ranks by the words that matter."""
    return {
        "size": query.limit,
        "_source": _NO_VECTOR,
        "query": {
            "bool": {
                "must": {"multi_match": {"query": without_stop_words(query.text), "fields": list(TEXT_FIELDS)}},
                "filter": search_filters(query),
            }
        },
    }


def knn_query_body(vector: Sequence[float], k: int, filters: list[dict[str, Any]]) -> dict[str, Any]:
    """A kNN query whose filter is applied during the graph search (efficient filtering, lucene or faiss),
    so the *k* neighbours returned all pass the filters instead of being post-filtered away."""
    return {
        "size": k,
        "_source": _NO_VECTOR,
        "query": {
            "knn": {
                VECTOR_FIELD: {
                    "vector": [float(value) for value in vector],
                    "k": k,
                    "filter": {"bool": {"filter": filters}},
                }
            }
        },
    }


def scope_query(workspace_id: str | None = None, kind: str | None = None) -> dict[str, Any]:
    """Query selecting one workspace's chunks (global ones excluded) and/or one kind's."""
    terms = []
    if workspace_id is not None:
        terms.append({"term": {"workspace_id": workspace_id}})
    if kind is not None:
        terms.append({"term": {"kind": kind}})
    return {"bool": {"filter": terms}} if terms else {"match_all": {}}


def chunk_from(raw: dict[str, Any]) -> Chunk:
    """The chunk a stored document holds (:func:`chunk_source` read back)."""
    source = raw.get("_source") or {}
    return Chunk(
        id=source.get("chunk_id", raw["_id"]),
        document_id=source.get("document_id", ""),
        index=int(source.get("chunk_index", 0)),
        text=source.get("text", ""),
        content_hash=source.get("content_hash", ""),
        source=source.get("source", ""),
        kind=source.get("kind", ""),
        workspace_id=source.get("workspace_id"),
        title=source.get("title", ""),
        key=source.get("key"),
        url=source.get("url"),
        project_ids=list(source.get("project_ids") or []),
        owner_id=source.get("owner_id"),
        metadata=source.get("metadata") or {},
        vector=source.get(VECTOR_FIELD),
        version=raw.get("_version"),
    )


def hit_from(raw: dict[str, Any]) -> Hit:
    source = raw.get("_source") or {}
    return Hit(
        chunk_id=source.get("chunk_id", raw["_id"]),
        document_id=source.get("document_id", ""),
        kind=source.get("kind", ""),
        score=float(raw.get("_score") or 0.0),
        title=source.get("title", ""),
        key=source.get("key"),
        url=source.get("url"),
        text=source.get("text", ""),
        workspace_id=source.get("workspace_id"),
        metadata=source.get("metadata") or {},
        project_ids=list(source.get("project_ids") or []),
        owner_id=source.get("owner_id"),
    )
