"""A model change without downtime: build the new index generation beside the live one, swap, drop the old one.

Changing ``PI_EMBEDDER`` or ``PI_EMBEDDING_MODEL`` no longer re-embeds in place (which showed vectors of two models
side by side, or stopped the embedded sink on another dimension). :func:`advance`, run every
``PI_GENERATION_INTERVAL`` by beat and by ``pi generations advance``, moves the change along:

1. **start**: the settings' model differs from the live generation's (and from the one being built): a new
   generation is recorded, with one pending scope per workspace the ledger knows and one for the global chunks.
   From then on every writer also writes it (:class:`~pi_framework.mirror.MirrorSink`), within
   ``PI_GENERATION_CHECK_SECONDS``;
2. **copy**: once every process writes it (three check intervals later), each pending scope is copied from the live
   generation: its chunks read back (``Sink.read_chunks``), embedded with the new model, written with the version each
   was stored with (so a newer write of a writer always wins, and a deleted chunk's tombstone refuses it), then what the
   new generation holds of the scope and the live one no longer does is deleted. A scope whose copy was overtaken by a
   failed write to the new generation is copied again (compare-and-set on its epoch). One pass copies for at most
   ``PI_GENERATION_INTERVAL`` seconds; a killed pass leaves its scope pending and the next pass redoes it;
3. **swap**: when no scope is pending, one transaction makes the new generation live; every process searches it
   within ``PI_GENERATION_CHECK_SECONDS`` (until then the old one, complete, still answers; never a mix: a search reads
   one generation with its own model, see :func:`pi_framework.search.search`);
4. **drop**: ``PI_GENERATION_GRACE_SECONDS`` after the swap, the old generation's indices or file are removed.

Chunks are copied as they are (same ids, text, fields): the ledger stays true for the new generation, and nothing is
re-chunked. A chunking change (``PI_CHUNK_*``) still applies in place, document by document, as documents change;
it never mixes two models' vectors.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import groupby
from typing import Any

from loguru import logger

from pi_framework import runtime
from pi_framework.contract.contributions import Embedder
from pi_framework.contract.documents import Chunk
from pi_framework.contract.sinks import Sink, SinkError
from pi_framework.db import generations as state
from pi_framework.db import get_database
from pi_framework.db.generations import Generation
from pi_framework.mirror import reembedded
from pi_framework.sync import current_leases
from pi_framework.sync.leases import LeaseLost

#: the lease of the one pass that copies at a time (plain, not fenced: copies are guarded by chunk versions)
BUILDER_LEASE = "index-generation-builder"


def settle_seconds() -> float:
    """How long after a start every process is sure to write the new generation (three check intervals)."""
    return 3 * runtime.get_registry().settings.PI_GENERATION_CHECK_SECONDS


def _pages(chunks: Iterator[Chunk], size: int) -> Iterator[list[Chunk]]:
    page: list[Chunk] = []
    for chunk in chunks:
        page.append(chunk)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


def _by_version(chunks: Sequence[Chunk]) -> Iterator[tuple[int, list[Chunk]]]:
    """*chunks* grouped by the version they were stored with (unversioned: 0, the smallest)."""
    ordered = sorted(chunks, key=lambda chunk: chunk.version or 0)
    for version, group in groupby(ordered, key=lambda chunk: chunk.version or 0):
        yield version, list(group)


def _scope_chunks(sink: Sink, scope: str) -> Iterator[Chunk]:
    return sink.read_chunks(global_chunks=True) if scope == state.GLOBAL_SCOPE else sink.read_chunks(workspace_id=scope)


def copy_scope(
    scope: str,
    live: Sequence[Sink],
    targets: Sequence[Sink],
    embedder: Embedder,
    page: int,
    progress: Callable[[], None] | None = None,
) -> int:
    """Copy *scope* from each *live* sink into its *target*, re-embedded; returns the chunks copied. *progress* is
    called after each page (the builder renews its lease there). Raises :class:`SinkError` when a target refuses a
    chunk (the scope stays pending)."""
    copied = 0
    for source, target in zip(live, targets, strict=True):
        target.ensure_ready(embedder.dimension)
        for chunks in _pages(_scope_chunks(source, scope), page):
            if progress is not None:
                progress()
            for version, group in _by_version(reembedded(chunks, embedder)):
                result = target.write(group, version=version)
                if result.failed:
                    chunk_id, reason = next(iter(result.failed.items()))
                    raise SinkError(
                        f"{target.name} refused {len(result.failed)} chunk(s) of scope {scope!r}: {chunk_id}: {reason}"
                    )
            copied += len(chunks)
        for chunks in _pages(_scope_chunks(target, scope), page):  # what the live generation no longer holds
            kept = source.existing([chunk.id for chunk in chunks])
            for version, group in _by_version([chunk for chunk in chunks if chunk.id not in kept]):
                target.delete_chunks([chunk.id for chunk in group], version=version)
    return copied


def _copy(building: Generation, live: Generation, deadline: float) -> dict[str, int]:
    """Copy pending scopes of *building* until none is left or *deadline* (monotonic) passed."""
    database, settings = get_database(runtime.get_registry().settings), runtime.get_registry().settings
    holder = f"{socket.gethostname()}:{os.getpid()}"
    leases = current_leases()
    counts = {"scopes_copied": 0, "chunks_copied": 0}
    if not leases.acquire(BUILDER_LEASE, holder):
        return counts

    def renew() -> None:  # a page can take a while (the model): a pass that stalls past its lease stops here
        leases.renew(BUILDER_LEASE, holder)

    try:
        live_sinks, targets = runtime.sinks_of(live), runtime.sinks_of(building)
        embedder = runtime.embedder_of(building)
        for scope, epoch in state.pending_scopes(database, building.name):
            if time.monotonic() >= deadline:
                break
            renew()
            copied = copy_scope(scope, live_sinks, targets, embedder, settings.PI_EMBEDDING_BATCH_SIZE * 4, renew)
            if state.finish_scope(database, building.name, scope, epoch, copied):
                counts["scopes_copied"] += 1
                counts["chunks_copied"] += copied
                logger.info("index generation {}: copied scope {} ({} chunks)", building.name, scope or "<global>", copied)
        if counts["scopes_copied"]:
            state.note_error(database, building.name, None)
    except LeaseLost:  # another pass copies now (this one stalled past the lease); its scope stays pending for it
        logger.warning("index generation {}: the copy lost its lease; another pass goes on", building.name)
    finally:
        leases.release(BUILDER_LEASE, holder)
    return counts


def advance(budget_seconds: float | None = None) -> dict[str, Any]:
    """One pass: start a generation for a changed model, copy pending scopes (for at most *budget_seconds*, default
    ``PI_GENERATION_INTERVAL``), swap when complete, drop generations replaced long enough ago."""
    settings = runtime.get_registry().settings
    database = get_database(runtime.get_registry().settings)
    wanted = runtime.configured_model()
    snapshot = state.snapshot(database, *wanted)
    result: dict[str, Any] = {"live": snapshot.live.name}
    building = snapshot.building
    if building is not None and building.model_key != wanted:
        logger.info("index generation {} ({}) abandoned: the settings ask for {}", building.name, building.model, wanted[1])
        state.abandon(database, building.name)
        result["abandoned"], building = building.name, None
    if building is None and snapshot.live.model_key != wanted:
        building = state.start(database, *wanted)  # another pass's start of the same model comes back as it is
        logger.info(
            "index generation {} started for {} {} (live: {} {})", building.name, *wanted, snapshot.live.name, snapshot.live.model
        )
        result["started"] = building.name
    if building is not None:
        result["building"] = building.name
        if state.copy_may_start(database, building.name, settle_seconds()):
            budget = settings.PI_GENERATION_INTERVAL if budget_seconds is None else budget_seconds
            try:
                result.update(_copy(building, snapshot.live, time.monotonic() + budget))
            except Exception as exc:  # noqa: BLE001 - reported, the scope stays pending, the next pass retries
                logger.error("index generation {}: copy failed: {}: {}", building.name, type(exc).__name__, exc)
                state.note_error(database, building.name, f"{type(exc).__name__}: {exc}")
                result["error"] = str(exc)
            if state.swap(database, building.name, settle_seconds()):
                logger.info("index generation {} ({}) is live; {} retired", building.name, building.model, snapshot.live.name)
                result["swapped"] = building.name
                runtime.forget_generations()
    for retired in state.due_for_drop(database, settings.PI_GENERATION_GRACE_SECONDS):
        try:
            for sink in runtime.sinks_of(retired):
                sink.drop()
        except Exception as exc:  # noqa: BLE001 - retried on the next pass
            logger.warning("index generation {}: drop failed ({}); retried later", retired.name, exc)
            continue
        state.mark_dropped(database, retired.name)
        logger.info("index generation {} dropped", retired.name)
        result.setdefault("dropped", []).append(retired.name)
    return result


def status() -> list[dict[str, Any]]:
    """Every index generation not dropped, for ``pi status``: name, model, status, scopes copied of total, chunks."""
    return [
        {
            "generation": item.generation.name,
            "embedder": item.generation.embedder,
            "model": item.generation.model,
            "status": item.generation.status,
            "scopes_copied": item.scopes_done,
            "scopes_total": item.scopes_total,
            "chunks_copied": item.chunks,
            "error": item.error,
        }
        for item in state.progress(get_database(runtime.get_registry().settings))
    ]
