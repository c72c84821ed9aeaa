"""``pi chats-backfill FILE.jsonl``: index an export of existing conversations in this process.

Each line is one JSON object with the arguments of ``index_chat_message``, in any order. The file is
streamed twice (first the chats' owners and titles, then the messages, indexed in batches: one
embedding batch per batch of messages), so memory stays flat whatever its size and every message is
indexed with its chat's final title. A bad line is logged with its line number and the field at
fault and counted; the rest of the file goes through.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from loguru import logger
from pydantic import ValidationError

from pi_chats.indexing import ChatIndex, ChatStats
from pi_chats.payloads import ChatMessage, describe
from pi_framework.api import DatabaseUnavailable, SinkError


@dataclass
class Line:
    """One line of the file: its size in bytes (for the progress bar) and its message, if it holds a valid one."""

    size: int
    message: ChatMessage | None = None
    rejected: bool = False


def read_messages(path: Path, report: bool = True) -> Iterator[Line]:
    """Yield every line of *path*, parsed; blank lines are skipped silently, bad ones marked rejected (and logged if *report*)."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                yield Line(len(raw))
                continue
            message = _parse(number, raw, report)
            yield Line(len(raw), message, rejected=message is None)


def _parse(number: int, raw: bytes, report: bool) -> ChatMessage | None:
    try:
        return ChatMessage.model_validate(json.loads(raw))
    except json.JSONDecodeError as exc:
        if report:
            logger.error("chats-backfill line {} rejected: not JSON ({})", number, exc.msg)
    except ValidationError as exc:
        if report:
            logger.error("chats-backfill line {} rejected: {}", number, describe(exc))
    return None


def _batches(lines: Iterator[Line], size: int, bar: Any, totals: ChatStats | None = None) -> Iterator[list[ChatMessage]]:
    """Batches of valid messages; advances the progress bar and counts rejected lines into *totals*."""
    batch: list[ChatMessage] = []
    for line in lines:
        bar.update(line.size)
        if totals is not None:
            totals.rejected += line.rejected
        if line.message is not None:
            batch.append(line.message)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def backfill(path: Path, batch_size: int, index: ChatIndex | None = None) -> ChatStats:
    """Index every message of *path*; return the totals.

    Two passes over the file: the first records every chat's owner and title, the second indexes, so
    each message is indexed once, already carrying its chat's final title, whatever the line order.
    """
    index = index or ChatIndex()
    index.ensure_rekeyed()  # first use outside a worker: an index of the first version is re-keyed before it grows
    totals = ChatStats()
    size = path.stat().st_size
    with click.progressbar(length=2 * size, label=f"indexing {path.name}", show_pos=False, show_percent=True) as bar:
        for batch in _batches(read_messages(path), batch_size, bar, totals):
            index.record_chats(batch)
        for batch in _batches(read_messages(path, report=False), batch_size, bar):
            totals.add(index.index_messages(batch))
    return totals


@click.command("chats-backfill")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(1, 10_000), help="Messages per indexing batch.")
def chats_backfill(file: Path, batch_size: int) -> None:
    """Index FILE.jsonl, an export of chats: one object per line with the fields of index_chat_message.

    Exits 1 when a line was rejected or a message could not be indexed (the rest is indexed all the same),
    2 when the PI database or a sink is unreachable.
    """
    started = time.monotonic()
    try:
        totals = backfill(file, batch_size)
    except (DatabaseUnavailable, SinkError) as exc:
        click.echo(f"\nerror: {exc}\nnothing is lost: run the command again, messages already indexed are skipped", err=True)
        raise SystemExit(2) from None
    seconds = time.monotonic() - started
    click.echo(
        f"{totals.messages + totals.rejected} lines in {seconds:.1f}s: {totals.messages} messages "
        f"({totals.messages / max(seconds, 1e-9):.0f}/s), {totals.rejected} rejected; "
        f"{totals.indexed} documents indexed (messages and chat titles), {totals.unchanged} unchanged, "
        f"{totals.dropped_deleted} of deleted chats dropped, {len(totals.failed)} failed"
    )
    for doc_id, reason in list(totals.failed.items())[:10]:
        click.echo(f"  failed {doc_id}: {reason}", err=True)
    if totals.rejected or totals.failed:
        raise SystemExit(1)


@click.command("chats-rekey")
def chats_rekey() -> None:
    """Re-key chat documents of the first version (ids without the workspace) now.

    Workers do it by themselves when they start; this is for documents an old worker wrote after that
    (a rolling upgrade). Exits 1 if some were left for the next run, 2 if the PI database or a sink is unreachable.
    """
    from pi_chats import rekey

    try:
        stats = ChatIndex().ensure_rekeyed(force=True)
    except (DatabaseUnavailable, SinkError) as exc:
        click.echo(f"error: {exc}\nnothing is lost: run the command again, it resumes where it stopped", err=True)
        raise SystemExit(2) from None
    click.echo(rekey.describe(stats))
    if stats is not None and not stats.complete:
        raise SystemExit(1)
