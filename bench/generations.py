"""A model change through an index generation, against re-vectorizing from Plane (prints figures; not a test).

    python bench/generations.py                      # 1,000 issues, hashing-v1 -> fastembed (about 3 minutes)
    python bench/generations.py --issues 3000 --to hashing-256     # the machinery alone, no model
    PI_BENCH_POSTGRES_URL=...   (else PI_TEST_POSTGRES_URL; Plane is a scratch database there, see bench/fleet.py)

A workspace of ``--issues`` work items is vectorized on the embedded defaults with the hashing embedder (the "old"
model). Then, side by side in one run, the same change of model two ways:

1. **re-vectorize**: what a model change meant before index generations — vectorize the workspace from Plane with the
   new model into an empty index (search had nothing, or a mix of two models, meanwhile);
2. **generation**: ``pi_framework.sync.generations.advance`` until the new generation is live — the stored chunks
   copied and re-embedded while the old generation keeps answering. Searches run all along in another thread; their
   latency (``--searches`` a second, 20 by default) is printed with the same searches on an idle process before the change.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fleet import PLUGINS, configure, scratch_plane  # noqa: E402 - bench/fleet.py
from live_sync import seed  # noqa: E402 - bench/live_sync.py

from pi_framework import runtime  # noqa: E402
from pi_framework.search import search  # noqa: E402
from pi_framework.sync import generations  # noqa: E402
from pi_framework.sync.vectorize import vectorize  # noqa: E402

QUERIES = ("login page crashes", "export invoices", "dark mode", "notifications are late", "slow dashboard")


def timed_searches(
    workspace_id: str, stop: threading.Event, latencies: list[float], answers: list[int], per_second: float
) -> None:
    """Search about *per_second* times a second until *stop* (users asking, not a hot loop stealing the copy's core),
    noting each latency (ms) and how many hits came back."""
    while per_second and not stop.is_set():
        search_all(workspace_id, latencies, answers, pause=lambda: stop.wait(1 / per_second))


def search_all(workspace_id: str, latencies: list[float], answers: list[int], pause: Callable[[], object] = lambda: None) -> None:
    """Each of :data:`QUERIES` once, noting its latency (ms) and how many hits came back; *pause* after each."""
    for query in QUERIES:
        started = time.perf_counter()
        hits = search(query, workspace_id, all_projects=True)
        latencies.append((time.perf_counter() - started) * 1000)
        answers.append(len(hits))
        pause()


def percentiles(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    cuts = statistics.quantiles(values, n=20)
    return f"{statistics.median(values):.0f} / {cuts[18]:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--issues", type=int, default=1000)
    parser.add_argument("--to", default="fastembed", help="the new model: fastembed (its default model) or hashing-<dim>")
    parser.add_argument("--searches", type=float, default=20.0, help="searches a second while the generation builds (0: none)")
    args = parser.parse_args()
    new_model = (
        {"PI_EMBEDDER": "fastembed", "PI_EMBEDDING_MODEL": "sentence-transformers/all-MiniLM-L6-v2"}
        if args.to == "fastembed"
        else {"PI_EMBEDDER": "hashing", "PI_EMBEDDING_MODEL": args.to}
    )
    with scratch_plane() as plane, tempfile.TemporaryDirectory() as tmp:
        workspace_id = seed(plane, args.issues)
        env = {
            "PI_DATA_DIR": str(Path(tmp) / "live"),
            "PLANE_DATABASE_URL": plane.url,
            "PI_LOAD_PLUGINS": PLUGINS,
            "PI_DISABLE_PLUGINS": "opensearch_sink",
            "PI_EMBEDDER": "hashing",
            "PI_GENERATION_CHECK_SECONDS": "0.2",
        }
        configure(**env)
        vectorize(workspace_id)
        chunks = sum(sink.count(workspace_id) for sink in runtime.get_sinks())
        print(
            f"workspace: {args.issues:,} issues, {chunks:,} chunks (hashing-v1); new model: {new_model['PI_EMBEDDER']} "
            f"{new_model['PI_EMBEDDING_MODEL']}\n"
        )

        idle: list[float] = []
        for _ in range(10):
            search_all(workspace_id, idle, [])

        # 1. re-vectorize from Plane into an empty index with the new model
        configure(**{**env, **new_model, "PI_DATA_DIR": str(Path(tmp) / "revectorized")})
        runtime.get_embedder()  # the model loaded before the clock starts, as in the generation's case
        started = time.perf_counter()
        vectorize(workspace_id)
        revectorize = time.perf_counter() - started

        # 2. a new generation beside the live one, searched all along
        configure(**{**env, **new_model})
        runtime.embedder_of(runtime.generations().live)
        stop, during, answers = threading.Event(), [], []
        searcher = threading.Thread(target=timed_searches, args=(workspace_id, stop, during, answers, args.searches))
        searcher.start()
        started = time.perf_counter()
        passes = 0
        while True:
            passes += 1
            if "swapped" in generations.advance(budget_seconds=3600):
                break
            time.sleep(0.2)
        generation = time.perf_counter() - started
        stop.set()
        searcher.join()

    print("| model change of one workspace | seconds | chunks/s | search while it runs (p50 / p95) | empty answers |")
    print("|---|---|---|---|---|")
    print(
        f"| re-vectorize from Plane into an empty index | {revectorize:.1f} | {chunks / revectorize:.0f} | "
        "nothing to search (or two models mixed) | all |"
    )
    print(
        f"| new index generation (copy, re-embed, swap; {passes} passes) | {generation:.1f} | {chunks / generation:.0f} | "
        f"{percentiles(during)} ({len(during)} searches; idle {percentiles(idle)}) | {answers.count(0)} |"
    )
    print(f"\ngeneration / re-vectorize time: {generation / revectorize:.2f}x")


if __name__ == "__main__":
    main()
