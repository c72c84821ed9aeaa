"""OpenSearch sink vs embedded sink, side by side in one run (prints a table; not a test).

    eval "$(tests/support/services.sh)"        # the real test node (OpenSearch 2.19.1 + k-NN, lucene engine)
    python bench/opensearch_vs_embedded.py     # 100,000 chunks, 200 queries
    python bench/opensearch_vs_embedded.py --chunks 20000 --queries 100 --url http://127.0.0.1:9200

Both sinks get exactly the same chunks, in batches of ``--batch``: each batch is written to one sink then the other,
the order alternating per batch, so both see the same machine load. Chunks: Plane-like issue text (a title and
eight sentences drawn from a 3,000-word vocabulary with a Zipf-like frequency) with **random 384-dimension vectors**
(standard normal, seeded), all in one workspace, none private or project-scoped. Queries: two to five content
words, embedded by the hashing embedder (``PI_EMBEDDER=hashing``), through ``pi_framework.search.search`` in
hybrid mode (kNN + BM25 + reciprocal rank fusion, ``limit`` 10, so 40 candidates per list), the sinks' own kNN and
BM25 queries timed alone as well. Every query is run on both sinks in turn, after ``--warmup`` untimed queries each.

OpenSearch: the node of ``--url`` (default ``OPENSEARCH_URL``, else ``PI_TEST_OPENSEARCH_URL``) under an index prefix
of this run's own, deleted at the end; the index as the sink creates it (the node's defaults: one shard, one replica,
unassigned on a single node, the 1 s refresh, request-durable translog); the segments are left as the bulk load made
them (no force-merge: what a live index looks like). ``--bulk-concurrency`` is the sink's bulk requests in flight (its
default when not given). After the load the node's own time is printed: indexing (mostly building the k-NN graph),
merging, refreshing. Embedded: a SQLite file in a temporary folder.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORKSPACE = "ws-bench"
#: the hashing embedder's dimension (query vectors), and so the chunks'
DIMENSION = 384


def vocabulary(rng: random.Random, size: int = 3_000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(3, 10))))
    return sorted(words)


class Text:
    """Deterministic pseudo-English: word frequency falls off like natural text (word k drawn ∝ 1/(k+10))."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.words = vocabulary(random.Random(1))
        weights = [1.0 / (rank + 10) for rank in range(len(self.words))]
        total = sum(weights)
        self.cumulative = list(itertools.accumulate(w / total for w in weights))

    def words_of(self, count: int) -> list[str]:
        return self.rng.choices(self.words, cum_weights=self.cumulative, k=count)

    def sentence(self) -> str:
        words = self.words_of(self.rng.randint(8, 20))
        return words[0].capitalize() + " " + " ".join(words[1:]) + "."

    def query(self) -> str:
        return " ".join(self.rng.choice(self.words[50:2_000]) for _ in range(self.rng.randint(2, 5)))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5_000, help="chunks per sink.write call")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--bulk-concurrency", type=int, default=None, help="the sink's bulk requests in flight")
    parser.add_argument("--url", default=os.environ.get("OPENSEARCH_URL") or os.environ.get("PI_TEST_OPENSEARCH_URL"))
    args = parser.parse_args()
    if not args.url:
        parser.error('no OpenSearch: pass --url, set OPENSEARCH_URL, or eval "$(tests/support/services.sh)"')

    import numpy as np
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(PI_DATA_DIR=str(Path(tmp) / "pi-data"), PI_EMBEDDER="hashing")
        for name in ("PI_DATABASE_URL", "OPENSEARCH_URL", "PI_SINKS", "PLANE_DATABASE_URL"):
            os.environ.pop(name, None)
        from pi_framework import runtime
        from pi_framework.contract.documents import Chunk
        from pi_framework.contract.sinks import SearchQuery
        from pi_framework.embedding import HashingEmbedder
        from pi_framework.search import search
        from pi_framework.sinks.embedded import EmbeddedSink
        from pi_framework.sinks.opensearch.sink import OpenSearchSink

        runtime.reset()
        embedder = runtime.get_embedder()
        assert isinstance(embedder, HashingEmbedder) and embedder.dimension == DIMENSION
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        options = {} if args.bulk_concurrency is None else {"bulk_concurrency": args.bulk_concurrency}
        opensearch = OpenSearchSink(args.url, prefix, **options)
        embedded = EmbeddedSink(Path(tmp) / "embedded.sqlite")
        sinks = {"opensearch": opensearch, "embedded": embedded}
        try:
            for sink in sinks.values():
                sink.ensure_ready(DIMENSION)
            text = Text(seed=7)
            vectors = np.random.default_rng(3)
            write_seconds = dict.fromkeys(sinks, 0.0)
            started = time.perf_counter()
            for number, start in enumerate(range(0, args.chunks, args.batch)):
                stop = min(start + args.batch, args.chunks)
                matrix = vectors.standard_normal((stop - start, DIMENSION), dtype=np.float32)
                batch = [
                    Chunk(
                        id=f"issues:{n}#0",
                        document_id=f"issues:{n}",
                        index=0,
                        text=" ".join(text.sentence() for _ in range(8)),
                        content_hash="x",
                        source="issues",
                        kind="issues",
                        workspace_id=WORKSPACE,
                        title=text.sentence(),
                        key=f"BEN-{n}",
                        vector=matrix[n - start].tolist(),
                    )
                    for n in range(start, stop)
                ]
                order = list(sinks) if number % 2 == 0 else list(reversed(sinks))
                for name in order:
                    begun = time.perf_counter()
                    result = sinks[name].write(batch)
                    write_seconds[name] += time.perf_counter() - begun
                    if result.failed or len(result.written) != len(batch):
                        raise SystemExit(f"{name}: {len(result.failed)} chunks failed, e.g. {next(iter(result.failed.items()))}")
                print(f"\rloaded {stop:,}/{args.chunks:,} chunks into both sinks", end="", file=sys.stderr, flush=True)
            print(f"\rloaded {args.chunks:,} chunks into both sinks in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            node = opensearch.client.indices.stats(index=f"{prefix}-*", metric="indexing,merge,refresh")["_all"]["total"]
            print(
                f"opensearch node: indexing {node['indexing']['index_time_in_millis'] / 1000:.0f} s, "
                f"merging {node['merges']['total_time_in_millis'] / 1000:.0f} s ({node['merges']['total']} merges), "
                f"refreshing {node['refresh']['total_time_in_millis'] / 1000:.0f} s ({node['refresh']['total']} refreshes); "
                f"{getattr(opensearch, 'bulk_concurrency', 1)} bulk request(s) in flight",
                file=sys.stderr,
            )
            counts = {name: sink.count(WORKSPACE) for name, sink in sinks.items()}  # also refreshes OpenSearch
            assert set(counts.values()) == {args.chunks}, counts

            questions = [text.query() for _ in range(args.warmup + args.queries)]
            query_vectors = {question: embedder.embed([question])[0].tolist() for question in questions}
            runs: dict[str, Callable[[object, str], object]] = {
                "hybrid": lambda sink, q: search(q, WORKSPACE, limit=10, sinks=[sink]),
                "kNN": lambda sink, q: sink.search_vector(SearchQuery(WORKSPACE, vector=query_vectors[q], limit=40)),
                "BM25": lambda sink, q: sink.search_text(SearchQuery(WORKSPACE, text=q, limit=40)),
            }
            times: dict[tuple[str, str], list[float]] = {(name, run): [] for name in sinks for run in runs}
            for position, question in enumerate(questions):
                for run_name, run in runs.items():
                    order = list(sinks) if position % 2 == 0 else list(reversed(sinks))
                    for name in order:
                        begun = time.perf_counter()
                        hits = run(sinks[name], question)
                        elapsed = 1000 * (time.perf_counter() - begun)
                        if position >= args.warmup:
                            times[(name, run_name)].append(elapsed)
                        if run_name == "kNN":
                            assert hits, f"{name}: kNN found nothing"
        finally:
            embedded.close()
            opensearch.client.indices.delete(index=f"{prefix}-*", ignore_unavailable=True)
            opensearch.close()

    print()
    print(
        f"{args.chunks:,} chunks, {DIMENSION}-dimension random vectors, one workspace; "
        f"{args.queries} queries (hashing embedder), after {args.warmup} warm-up queries"
    )
    rows = [("bulk write, chunks/s", lambda name: f"{args.chunks / write_seconds[name]:,.0f}")]
    for run_name in runs:
        rows.append((f"{run_name} p50, ms", lambda name, r=run_name: f"{statistics.median(times[(name, r)]):.1f}"))
        rows.append((f"{run_name} p90, ms", lambda name, r=run_name: f"{percentile(times[(name, r)], 90):.1f}"))
    print(f"| {'what':<22} | {'opensearch':>10} | {'embedded':>10} | {'opensearch / embedded':>21} |")
    print(f"|{'-' * 24}|{'-' * 12}|{'-' * 12}|{'-' * 23}|")
    for label, value in rows:
        left, right = value("opensearch"), value("embedded")
        ratio = float(left.replace(",", "")) / float(right.replace(",", ""))
        print(f"| {label:<22} | {left:>10} | {right:>10} | {ratio:>20.2f}× |")


if __name__ == "__main__":
    main()
