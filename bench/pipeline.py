"""Benchmarks of the indexing pipeline and the embedded sink (prints figures; not a test).

    python bench/pipeline.py                 # everything (about 10 minutes on 2 cores)
    python bench/pipeline.py --docs 500      # smaller corpus for the throughput parts
    python bench/pipeline.py --only search   # one part: throughput | rerun | rss | search

1. throughput: the same corpus of realistic Plane-like issues (HTML bodies, 20 to 2,000 words)
   through (a) fastembed alone, embedding exactly the chunk texts the pipeline embeds, and (b) the
   whole pipeline (normalise, chunk, hash, ledger, embed, embedded sink). Target: b ≥ 0.85 × a.
2. rerun: the same corpus with 1% of the documents edited (last paragraph): chunks embedded must
   equal the chunks whose content changed; time as a fraction of the full run (target ≤ 5%).
3. rss: peak RSS of indexing 20,000 vs 2,000 documents, each in a fresh subprocess (target < 1.5×).
4. search: p50 latency of search on the embedded sink holding 100,000 chunks (target < 100 ms).
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

STOP_WORDS = "the a to of and in for on with when after before is are was should must can not does it this that we".split()
WORDS = (
    "login page button crash error timeout upload file attachment editor cycle module project state label priority "
    "assignee comment description workspace member invite email notification webhook api token integration github "
    "slack calendar sync export import csv pdf report chart dashboard filter search sort view layout kanban list "
    "spreadsheet gantt estimate sprint backlog release bug feature request customer billing invoice plan upgrade "
    "permission role admin guest settings theme dark mode mobile android ios browser safari firefox chrome cache "
    "database query index migration performance memory latency server deploy docker kubernetes helm config env"
).split()
PEOPLE = ["alice", "bob", "carol", "dave", "erin"]
_SYLLABLES = "ka ro mi ne tu sa lo ve pi da gro sten bel far quin dor mal tex vin zu".split()


def _vocabulary(size: int = 20_000) -> tuple[list[str], list[float]]:
    """Stop words, then domain words, then pronounceable made-up words, with Zipf weights (1/rank) like real text."""
    rng = random.Random(11)
    made_up: dict[str, None] = {}
    while len(made_up) < size:
        made_up["".join(rng.choices(_SYLLABLES, k=rng.randint(2, 4)))] = None
    words = STOP_WORDS + rng.sample(WORDS, len(WORDS)) + list(made_up)
    return words, [1.0 / rank for rank in range(1, len(words) + 1)]


VOCABULARY, WEIGHTS = _vocabulary()
_CUMULATIVE = list(itertools.accumulate(WEIGHTS))


def _words(rng: random.Random, count: int) -> list[str]:
    return rng.choices(VOCABULARY, cum_weights=_CUMULATIVE, k=count)


def _sentence(rng: random.Random) -> str:
    words = _words(rng, rng.randint(8, 20))
    return words[0].capitalize() + " " + " ".join(words[1:]) + "."


def _query(rng: random.Random) -> str:
    """What people type: two to five content words (not stop words), mostly of middling frequency."""
    return " ".join(rng.choice(VOCABULARY[len(STOP_WORDS) : 3_000]) for _ in range(rng.randint(2, 5)))


def _paragraphs(rng: random.Random, words: int) -> list[str]:
    out: list[str] = []
    while words > 0:
        sentences = [_sentence(rng) for _ in range(rng.randint(2, 5))]
        words -= sum(len(s.split()) for s in sentences)
        out.append(" ".join(sentences))
    return out


def _html(rng: random.Random, paragraphs: list[str]) -> str:
    parts = []
    for index, paragraph in enumerate(paragraphs):
        if index % 4 == 3:
            items = paragraph.split(". ")
            parts.append("<ul>" + "".join(f"<li><p>{item}</p></li>" for item in items) + "</ul>")
        elif index % 5 == 1:
            person = rng.choice(PEOPLE)
            parts.append(
                f'<p>{paragraph} cc <mention-component entity_name="user_mention" label="{person}"></mention-component> '
                f'see <a href="https://example.com/{index}">the spec</a>&nbsp;for details.</p>'
            )
        else:
            parts.append(f"<p>{paragraph}</p>")
    return "".join(parts)


def corpus(count: int, seed: int = 7, edited: frozenset[int] = frozenset()) -> Iterator:
    """*count* Plane-like issues, generated lazily (a 20,000-document corpus never sits in memory)."""
    from pi_framework.contract.documents import Document

    for number in range(count):
        rng = random.Random(seed * 1_000_003 + number)
        words = 2_000 if number % 50 == 0 else int(min(1_200, max(20, rng.lognormvariate(4.6, 0.7))))
        paragraphs = _paragraphs(rng, words)
        if number in edited:
            paragraphs[-1] = paragraphs[-1] + " Edited: the customer confirmed the fix works on staging."
        yield Document(
            id=f"issues:{number:06d}",
            source="issues",
            kind="issues",
            workspace_id=f"ws-{number % 3}",
            title=" ".join(_words(rng, rng.randint(3, 9))).capitalize(),
            body=_html(rng, paragraphs),
            body_format="html",
            key=f"ENG-{number}",
        )


def _fresh_environment(data_dir: Path) -> None:
    os.environ["PI_DATA_DIR"] = str(data_dir)
    for name in ("PI_DATABASE_URL", "OPENSEARCH_URL", "PI_SINKS"):
        os.environ.pop(name, None)
    from pi_framework import runtime

    runtime.reset()


# --------------------------------------------------------------------------- 1 + 2
def throughput_and_rerun(docs: int, only: str | None) -> None:
    from pi_framework import runtime
    from pi_framework.pipeline.indexer import Indexer

    with tempfile.TemporaryDirectory() as tmp:
        _fresh_environment(Path(tmp))
        embedder = runtime.get_embedder()
        embedder.embed(["warm up"])
        indexer = Indexer()
        texts = [chunk.text for document in corpus(docs) for chunk in indexer.chunks_of(document)]
        print(f"corpus: {docs} documents, {len(texts)} chunks ({len(texts) / docs:.2f} per document)")

        from fastembed import TextEmbedding

        from pi_framework.embedding import DEFAULT_MODEL, offline_model_dir

        settings = indexer.settings
        alone = TextEmbedding(
            DEFAULT_MODEL, specific_model_path=str(offline_model_dir(settings.data_dir)), threads=settings.PI_EMBEDDING_THREADS
        )
        list(alone.embed(["warm up"]))
        started = time.perf_counter()
        list(alone.embed(texts, batch_size=settings.PI_EMBEDDING_BATCH_SIZE))
        raw = time.perf_counter() - started
        del alone
        del texts
        print(f"(a) fastembed alone : {raw:7.1f} s  {docs / raw:7.1f} docs/s")

        started = time.perf_counter()
        stats = indexer.index(corpus(docs))
        full = time.perf_counter() - started
        assert not stats.failed, stats.failed
        print(f"(b) whole pipeline  : {full:7.1f} s  {docs / full:7.1f} docs/s  ({stats.chunks_embedded} chunks embedded)")
        print(f"    ratio b/a       : {raw / full:.3f}   (target >= 0.85)")
        if only == "throughput":
            return

        edited = frozenset(random.Random(1).sample(range(docs), max(1, docs // 100)))
        edited_ids = {f"issues:{n:06d}" for n in edited}
        changed = 0  # chunks of the edited version whose id is new or whose content hash differs
        for before, after in zip(corpus(docs), corpus(docs, edited=edited), strict=True):
            if before.id in edited_ids:
                old = {chunk.id: chunk.content_hash for chunk in indexer.chunks_of(before)}
                changed += sum(old.get(chunk.id) != chunk.content_hash for chunk in indexer.chunks_of(after))
        started = time.perf_counter()
        rerun = indexer.index(corpus(docs, edited=edited))
        again = time.perf_counter() - started
        print(
            f"rerun with {len(edited)} edited documents: {rerun.chunks_embedded} chunks embedded "
            f"(changed chunks: {changed}), {rerun.documents_unchanged} unchanged, {again:.2f} s = "
            f"{100 * again / full:.1f}% of the full run (target <= 5%)"
        )


# --------------------------------------------------------------------------- 3
def rss_child(docs: int) -> None:
    """Index *docs* documents in this (fresh) process and print its peak RSS in MB."""
    from pi_framework.pipeline.indexer import Indexer

    with tempfile.TemporaryDirectory() as tmp:
        _fresh_environment(Path(tmp))
        started = time.perf_counter()
        stats = Indexer().index(corpus(docs))
        elapsed = time.perf_counter() - started
    # VmHWM, not ru_maxrss: the latter keeps the peak of the parent this process was forked from
    peak = (
        next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
        / 1024
    )
    print(f"{peak:.1f} {stats.chunks_embedded} {elapsed:.1f}")


def rss(small: int, large: int, embedder: str) -> None:
    results = {}
    print(f"peak RSS with the {embedder} embedder:")
    for docs in (small, large):
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(docs)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PI_EMBEDDER": embedder},
        )
        peak, chunks, elapsed = out.stdout.split()
        results[docs] = float(peak)
        print(f"peak RSS indexing {docs:>6} documents ({chunks} chunks, {elapsed} s): {float(peak):7.1f} MB")
    print(f"    ratio           : {results[large] / results[small]:.2f}   (target < 1.5)")


# --------------------------------------------------------------------------- 4
def search_latency(chunks: int, queries: int = 60) -> None:
    import numpy as np

    from pi_framework import runtime
    from pi_framework.contract.documents import Chunk
    from pi_framework.contract.sinks import SearchQuery
    from pi_framework.search import search

    with tempfile.TemporaryDirectory() as tmp:
        _fresh_environment(Path(tmp))
        embedder = runtime.get_embedder()
        sink = runtime.get_sinks()[0]
        sink.ensure_ready(embedder.dimension)
        rng = np.random.default_rng(3)
        words = random.Random(5)
        started = time.perf_counter()
        batch = 5_000
        for start in range(0, chunks, batch):
            vectors = rng.standard_normal((batch, embedder.dimension), dtype=np.float32)
            sink.write(
                [
                    Chunk(
                        id=f"issues:{n}#0",
                        document_id=f"issues:{n}",
                        index=0,
                        text=" ".join(_sentence(words) for _ in range(8)),
                        content_hash="x",
                        source="issues",
                        kind="issues",
                        workspace_id="ws-big",
                        title=_sentence(words),
                        vector=vectors[n - start].tolist(),
                    )
                    for n in range(start, min(start + batch, chunks))
                ]
            )
        print(f"search: loaded {sink.count('ws-big')} chunks into one workspace in {time.perf_counter() - started:.0f} s")
        questions = [_query(words) for _ in range(queries)]

        def timed(run) -> list[float]:  # noqa: ANN001 - callable
            times = []
            for question in questions:
                started = time.perf_counter()
                run(question)
                times.append(1000 * (time.perf_counter() - started))
            return times

        started = time.perf_counter()
        search("first query builds the vector cache", "ws-big")
        print(f"    first search (loads the vector cache): {1000 * (time.perf_counter() - started):.0f} ms")
        vectors = {question: embedder.embed([question])[0].tolist() for question in questions}
        for label, run in (
            ("embed the query", lambda q: embedder.embed([q])),
            ("sink kNN only", lambda q: sink.search_vector(SearchQuery("ws-big", vector=vectors[q], limit=40))),
            ("sink BM25 only", lambda q: sink.search_text(SearchQuery("ws-big", text=q, limit=40))),
            ("search() hybrid", lambda q: search(q, "ws-big")),
        ):
            times = timed(run)
            print(f"    {label:<16}: p50 {statistics.median(times):6.1f} ms   p90 {np.percentile(times, 90):6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=2_000)
    parser.add_argument("--rss-docs", type=int, nargs=2, default=(2_000, 20_000), metavar=("SMALL", "LARGE"))
    parser.add_argument(
        "--rss-embedder",
        choices=["fastembed", "hashing"],
        default="fastembed",
        help="hashing measures the pipeline's own memory in minutes instead of hours on a slow machine",
    )
    parser.add_argument("--search-chunks", type=int, default=100_000)
    parser.add_argument("--only", choices=["throughput", "rerun", "rss", "search"])
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    if args.rss_child:
        rss_child(args.rss_child)
        return
    os.environ.pop("PI_EMBEDDER", None)  # the real model, except where --rss-embedder says otherwise
    if args.only in (None, "throughput", "rerun"):
        throughput_and_rerun(args.docs, args.only)
    if args.only in (None, "rss"):
        rss(*args.rss_docs, args.rss_embedder)
    if args.only in (None, "search"):
        search_latency(args.search_chunks)


if __name__ == "__main__":
    main()
