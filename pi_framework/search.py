"""Hybrid search over every configured sink: kNN and BM25 fused with reciprocal rank fusion (RRF), or with a convex
combination of normalised scores (``PI_SEARCH_FUSION=convex``).

Every query is filtered inside each sink — by workspace (global content such as docs matches from every
workspace), by privacy, and by what the user may read in Plane — and the fused result is checked once more
here, so a search never returns content its user may not see, whatever the query text contains. Filtering
inside the sink (kNN pre-filter, BM25 filter) means a page of results is never shortened by the check here,
which only catches a sink's bug.

Who sees what (:mod:`pi_framework.plane.access` resolves it from Plane's database at query time):

* ``user_id`` given: global content; if the user is an active member of the workspace, its content that is not
  project-scoped (workspace pages, public or their own private ones) and the project-scoped content (work items,
  project pages) of projects where they are an active member — as a guest without ``guest_view_all_features``
  only what they created. Not a workspace member: global content only.
* no ``user_id``: global content and the workspace's public content that is not project-scoped; nothing of any
  project (safe by default).
* ``all_projects=True`` (operators, ``pi search --all-projects``): no project filter and no membership check,
  logged; privacy still applies.

Plane's filters (``filters``: state, state group, priority, labels, assignees, project; see
:class:`~pi_framework.contract.sinks.Filters`) narrow that further, inside each sink too, so a filtered page of
results is as full as an unfiltered one.

A sink's failed vector query (a :class:`~pi_framework.contract.sinks.SinkError`: cluster down, HTTP 400 because the
index's vector dimension is not the embedder's, a missing k-NN plugin) is never hidden. In ``hybrid`` mode the
search still answers from BM25, but every such query is logged at ERROR (sink and reason) and counted in
:data:`vector_query_failures`, so an outage or a misconfiguration shows in the logs at once instead of quietly
turning hybrid search into text search for good. In ``vector`` mode nothing else could answer: the error is
raised, like any text-search error in every mode. Other exceptions (bugs) are never caught.

Documents the pipeline *withheld* (their new version was refused and a sink would not delete the old one either,
see :meth:`~pi_framework.pipeline.ledger.Ledger.withhold`) are dropped from the results: one indexed query on the
PI database per search that found something.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace

from loguru import logger

from pi_framework import metrics, runtime
from pi_framework import rerank as rerank_module
from pi_framework.contract.contributions import Embedder
from pi_framework.contract.sinks import Filters, Hit, SearchQuery, Sink, SinkError
from pi_framework.db import get_database
from pi_framework.pipeline.ledger import Ledger
from pi_framework.plane.access import resolve_access
from pi_framework.settings import get_settings

MODES = ("hybrid", "text", "vector")
#: the usual RRF constant: damps the head of each list so one list alone cannot dominate
RRF_K = 60
#: each list is asked for more than ``limit`` hits so that fusion and per-document grouping have material
_CANDIDATES_FACTOR = 4
#: hybrid searches of this process that answered from text alone because a sink's vector query failed, by sink name
vector_query_failures: Counter[str] = Counter()


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Hit]], k: int = RRF_K) -> list[Hit]:
    """Fuse ranked lists: a chunk scores ``Σ 1 / (k + rank)`` over the lists it appears in; best first."""
    scores: dict[str, float] = {}
    hits: dict[str, Hit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + 1.0 / (k + rank)
            hits.setdefault(hit.chunk_id, hit)
    fused = sorted(hits, key=lambda chunk: scores[chunk], reverse=True)
    return [_with_score(hits[chunk], scores[chunk]) for chunk in fused]


def convex_fusion(rankings: Sequence[Sequence[Hit]]) -> list[Hit]:
    """Fuse ranked lists by their scores: each list's scores min-max normalised to [0, 1], a chunk scores the mean of
    its normalised scores over the lists (0 in a list it is not in); best first, ties in list order. The combination
    OpenSearch's hybrid query uses by default (``min_max`` normalisation, ``arithmetic_mean``, equal weights)."""
    lists = [ranking for ranking in rankings if ranking]
    scores: dict[str, float] = {}
    hits: dict[str, Hit] = {}
    for ranking in lists:
        raw = [hit.score for hit in ranking]
        low, high = min(raw), max(raw)
        for hit in ranking:
            normalised = (hit.score - low) / (high - low) if high > low else 1.0
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + normalised / len(lists)
            hits.setdefault(hit.chunk_id, hit)
    fused = sorted(hits, key=lambda chunk: scores[chunk], reverse=True)
    return [_with_score(hits[chunk], scores[chunk]) for chunk in fused]


def _with_score(hit: Hit, score: float) -> Hit:
    return replace(hit, score=score)


def _vector_hits(sink: Sink, query: SearchQuery) -> list[Hit]:
    """The sink's kNN hits; in hybrid mode a failed vector query leaves the text hits to answer, loudly."""
    try:
        return metrics.sink_call(sink.name, "search_vector", sink.search_vector, query)
    except SinkError as exc:
        vector_query_failures[sink.name] += 1
        logger.error(
            "search: sink {} rejected the vector query ({}); this hybrid search answers from text only "
            "({} such failures in this process)",
            sink.name,
            exc,
            vector_query_failures[sink.name],
        )
        return []


def search(
    query: str,
    workspace_id: str,
    kinds: Sequence[str] | None = None,
    user_id: str | None = None,
    limit: int = 10,
    mode: str = "hybrid",
    sinks: Sequence[Sink] | None = None,
    embedder: Embedder | None = None,
    all_projects: bool = False,
    filters: Filters | Mapping[str, Sequence[str] | str | None] | None = None,
    rerank: bool | None = None,
) -> list[Hit]:
    """The best *limit* documents for *query* in *workspace_id* that *user_id* may see, one hit (its best chunk) per
    document.

    ``mode`` is ``hybrid`` (kNN + BM25), ``text`` (BM25 only) or ``vector`` (kNN only). ``kinds`` None or
    empty means every kind. ``user_id`` is the user the results are for: their private content matches, and
    project-scoped content only of the projects they may read in Plane (see the module's docstring; without a user
    nothing project-scoped matches). ``all_projects`` drops the project and membership filters (operators only; logged).
    ``filters`` keeps only chunks matching Plane's filters: a :class:`~pi_framework.contract.sinks.Filters` or a mapping
    of its fields (``{"state_group": ["started"], "labels": ["bug"], "assignees": [user_id]}``); values of one field
    are alternatives, fields all apply.
    ``sinks`` and ``embedder`` (the model of the query vector) default to the live index generation's; pass both when
    searching sinks built by hand.
    ``rerank``: in ``hybrid`` mode, the configured cross-encoder (``PI_RERANKER_PATH``, see :mod:`pi_framework.rerank`)
    re-orders the best ``PI_RERANK_CANDIDATES`` documents of the fusion; ``None`` = whenever one is configured and
    loads, ``False`` = never.
    Scores are those of the fusion (``PI_SEARCH_FUSION``: RRF, or the mean of min-max normalised scores; comparable
    within one result list), or the cross-encoder's when it re-ranked.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not workspace_id:
        raise ValueError("search needs a workspace id: every search is filtered by workspace")
    if not query.strip() or limit <= 0:
        return []
    live = runtime.generations().live if sinks is None or embedder is None else None
    # one reading of the live generation for both: the query vector is of the model of the sinks searched
    sinks = list(sinks) if sinks is not None else runtime.sinks_of(live)
    request = SearchQuery(
        workspace_id=workspace_id,
        text=query,
        kinds=list(kinds) if kinds else None,
        user_id=user_id,
        limit=limit * _CANDIDATES_FACTOR,
        filters=Filters.of(filters),
    )
    if all_projects:
        logger.info("search: every project of workspace {} (all_projects, operator search; user {})", workspace_id, user_id)
        request.projects = None
    elif user_id is not None:
        access = resolve_access(workspace_id, user_id)
        request.workspace_member = access.workspace_member
        request.projects = sorted(access.projects)
        request.guest_projects = sorted(access.guest_projects)
    if mode != "text":
        request.vector = (embedder or runtime.embedder_of(live)).embed([query])[0].tolist()
    rankings: list[list[Hit]] = []
    for sink in sinks:
        if mode != "vector":
            rankings.append(metrics.sink_call(sink.name, "search_text", sink.search_text, request))
        if mode != "text":
            rankings.append(
                metrics.sink_call(sink.name, "search_vector", sink.search_vector, request)
                if mode == "vector"
                else _vector_hits(sink, request)
            )
    fused = convex_fusion(rankings) if get_settings().PI_SEARCH_FUSION == "convex" else reciprocal_rank_fusion(rankings)
    withheld = Ledger(get_database()).withheld(list({hit.document_id for hit in fused})) if fused else set()
    reranker = rerank_module.get_reranker() if rerank is not False and mode == "hybrid" else None
    wanted = max(limit, get_settings().PI_RERANK_CANDIDATES) if reranker is not None else limit
    best_per_document: dict[str, Hit] = {}
    for hit in fused:
        if hit.document_id in withheld:
            continue
        if not request.allows(hit):  # defence in depth: a sink's filter bug must not leak
            logger.error("search: a sink returned chunk {} that this search may not see; dropped", hit.chunk_id)
            continue
        best_per_document.setdefault(hit.document_id, hit)
        if len(best_per_document) == wanted:
            break
    best = list(best_per_document.values())
    if reranker is not None and len(best) > 1:
        best = _reranked(reranker, query, best)
    return best[:limit]


def _reranked(reranker: rerank_module.Reranker, query: str, hits: list[Hit]) -> list[Hit]:
    """*hits* in the order of the cross-encoder's scores (each hit's score becomes it); on failure, as they were (and
    the re-ranker is dropped for this process, with one warning)."""
    try:
        scores = reranker.score(query, [hit.text for hit in hits])
    except Exception as exc:  # noqa: BLE001 - a broken re-ranker must not break search: fusion alone
        rerank_module.disable_after_failure(reranker, exc)
        return hits
    order = sorted(range(len(hits)), key=lambda index: (-float(scores[index]), index))
    return [_with_score(hits[index], float(scores[index])) for index in order]
