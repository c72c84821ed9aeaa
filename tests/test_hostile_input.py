"""Hostile input costs linear time (issue 11): no body can hold a worker for long.

A Markdown regex took cubic time on ``"[a](" * n`` (a 60 KB chat message did not finish in 300 s), the
heading scan and ``html.parser`` were quadratic, and a soft time limit cannot interrupt a regex. Every
pathological input of ``bench/hostile_input.py``'s corpus (unclosed tags and comments, ``[a](`` repeated,
nested brackets, long runs of one markup character, deep nesting, combining marks, a mix of all) goes through
``Indexer.chunks_of`` -- the cap, normalisation, chunking with the real model's tokenizer and hashing, exactly
what the indexer runs for a document -- as HTML and as Markdown, and must cost at most ``BOUND`` times prose
of the same size, measured in the same run (a ratio, not an absolute time).

``BOUND`` is 6: text of one token per character has five times the tokens of prose, and the worst inputs
measured 3.4 times prose (CPU time, 120 KB, 2 cores); anything super-linear is far above 6 at this size
(before the fix the same inputs were 25 to 230 times prose at 10 KB, and did not finish in 30 s at 100 KB).
Times are CPU times of this process (other processes on the machine matter less than to wall time), and a
case above the bound is measured again, best of five, with the prose, before it fails.

Also here: the html.parser-compatible tokenizer gives html.parser's events on well-formed markup, and a
document above ``PI_MAX_DOCUMENT_CHARS`` is cut with one warning naming it and still indexed.
"""

from __future__ import annotations

import importlib.util
import random
import re
import sys
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType

import pytest
from loguru import logger

from pi_framework.contract.documents import Document, chunk_id
from pi_framework.db import Database
from pi_framework.embedding import FastEmbedder, HashingEmbedder
from pi_framework.pipeline.chunking import _headings
from pi_framework.pipeline.indexer import Indexer
from pi_framework.pipeline.normalise import (
    _HTML_TAG,
    _HtmlTokenizer,
    _inline_links,
    _strip_html_comments,
    html_to_text,
    markdown_to_text,
    normalise,
)
from pi_framework.settings import load_settings
from pi_framework.sinks.embedded import EmbeddedSink

#: pathological input may cost at most this many times prose of the same size (see the module docstring)
BOUND = 6.0
#: characters of every input (100-200 KB keeps the module quick; a quadratic step shows clearly already)
SIZE = 120_000
FORMATS = ("html", "markdown")


def _bench() -> ModuleType:
    """``bench/hostile_input.py``, whose ``corpus(size)`` and ``prose(size)`` are the inputs here."""
    path = Path(__file__).parents[1] / "bench" / "hostile_input.py"
    spec = importlib.util.spec_from_file_location("hostile_input_bench", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


BENCH = _bench()
CORPUS = BENCH.corpus(SIZE)


@pytest.fixture(scope="module")
def indexer(tmp_path_factory) -> Indexer:
    folder = tmp_path_factory.mktemp("hostile")
    settings = load_settings(PI_DATA_DIR=folder, PI_DATABASE_URL=f"sqlite:///{folder / 'pi.sqlite'}")
    database = Database(settings)
    yield Indexer(sinks=[], embedder=FastEmbedder(settings), database=database, settings=settings)
    database.dispose()


def cpu_seconds(indexer: Indexer, body: str, body_format: str, runs: int) -> float:
    """Best CPU time of *runs* runs of ``chunks_of`` on one document with *body*."""
    document = Document(
        id="hostile:1",
        source="hostile",
        kind="hostile",
        workspace_id="w",
        title="A hostile document",
        body=body,
        body_format=body_format,
    )
    best = float("inf")
    for _ in range(runs):
        started = time.process_time()
        indexer.chunks_of(document)
        best = min(best, time.process_time() - started)
    return max(best, 1e-6)


def ratio_to_prose(indexer: Indexer, body: str, body_format: str, prose_seconds: float) -> float:
    """Time of *body* over the time of prose of its size; measured again (best of five, prose too) when above
    ``BOUND``, so a busy moment of the machine does not fail the test."""
    ratio = cpu_seconds(indexer, body, body_format, runs=1) / prose_seconds
    if ratio > BOUND:
        prose = cpu_seconds(indexer, BENCH.prose(len(body)), body_format, runs=5)
        ratio = cpu_seconds(indexer, body, body_format, runs=5) / prose
    return ratio


@pytest.fixture(scope="module")
def prose_seconds(indexer: Indexer) -> Callable[[str, int], float]:
    """``(format, size)`` -> best CPU time of prose of that size, measured once for the module."""
    times: dict[tuple[str, int], float] = {}

    def measure(body_format: str, size: int) -> float:
        if (body_format, size) not in times:
            times[body_format, size] = cpu_seconds(indexer, BENCH.prose(size), body_format, runs=3)
        return times[body_format, size]

    return measure


@pytest.mark.parametrize("body_format", FORMATS)
@pytest.mark.parametrize("name", list(CORPUS))
@pytest.mark.slow
def test_hostile_input_costs_about_as_much_as_prose(indexer: Indexer, prose_seconds, name: str, body_format: str) -> None:
    body = CORPUS[name]
    assert SIZE * 0.9 <= len(body) <= SIZE * 1.1, f"corpus input {name!r} is {len(body)} characters"
    ratio = ratio_to_prose(indexer, body, body_format, prose_seconds(body_format, len(body)))
    assert ratio <= BOUND, f"{name!r} as {body_format} costs {ratio:.1f} times prose of the same size"


@pytest.mark.parametrize("body_format", FORMATS)
@pytest.mark.parametrize("character", ["a", "<", "[", "#", "&", "\u0301"])
@pytest.mark.slow
def test_a_megabyte_of_one_character(indexer: Indexer, prose_seconds, character: str, body_format: str) -> None:
    """1 MB (the default cap) of one character against 1 MB of prose."""
    body = character * 1_000_000
    ratio = ratio_to_prose(indexer, body, body_format, prose_seconds(body_format, len(body)))
    assert ratio <= BOUND, f"1 MB of {character!r} as {body_format} costs {ratio:.1f} times prose"


# ------------------------------------------------------------------ same results as before on normal input


class _Events:
    """Records html.parser-style events (consecutive data merged: html.parser may split it anywhere)."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.events.append(("start", tag, tuple(attrs)))

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.events.append(("startend", tag, tuple(attrs)))

    def handle_endtag(self, tag: str) -> None:
        self.events.append(("end", tag))

    def handle_data(self, data: str) -> None:
        if self.events and self.events[-1][0] == "data":
            self.events[-1] = ("data", self.events[-1][1] + data)
        else:
            self.events.append(("data", data))


class _StdlibParser(HTMLParser):
    def __init__(self, events: _Events) -> None:
        super().__init__(convert_charrefs=True)
        self.handle_starttag = events.handle_starttag  # type: ignore[method-assign]
        self.handle_startendtag = events.handle_startendtag  # type: ignore[method-assign]
        self.handle_endtag = events.handle_endtag  # type: ignore[method-assign]
        self.handle_data = events.handle_data  # type: ignore[method-assign]


def _well_formed_html(rng: random.Random, depth: int = 0) -> str:
    """Random HTML as editors write it: nested elements, quoted/bare/empty attributes (with > and < in quoted
    values), entities, comments, doctype, CDATA, processing instructions, script/style, stray < and &."""
    parts = []
    for _ in range(rng.randint(0, 5)):
        roll = rng.random()
        if roll < 0.3:
            parts.append(
                rng.choice(["text", " ", "a &amp; b", "&lt;3", "&nbsp;", "x < y", "1 &", "&#8364;", "\n", "a>b", "&copy"])
            )
        elif roll < 0.4:
            parts.append(
                rng.choice(
                    ["<!-- c -->", "<!-- a > b -->", "<!DOCTYPE html>", "<?xml x?>", "<![CDATA[x]]>", "<br/>", "</ p>", "</1>"]
                )
            )
        else:
            name = rng.choice(["p", "div", "a", "b", "script", "style", "br", "img", "mention-component", "li", "x:y"])
            attributes = ""
            for _ in range(rng.randint(0, 3)):
                value, quote = rng.choice([("x", ""), ("a>b", '"'), ("a<b", "'"), ("&amp;", '"'), ("", '"'), ("1 2", "'")])
                attributes += f" {rng.choice(['href', 'label', 'data-x', 'CLASS', 'alt'])}" + (
                    "" if rng.random() < 0.2 else f"={quote}{value}{quote}"
                )
            if name in ("script", "style"):
                parts.append(f"<{name}{attributes}>if (a < b && '</div>') x();</{name}>")
            elif depth < 4:
                parts.append(
                    f"<{name}{attributes}>{_well_formed_html(rng, depth + 1)}" + (f"</{name}>" if rng.random() < 0.9 else "")
                )
    return "".join(parts)


def test_html_tokenizer_gives_html_parsers_events_on_well_formed_markup() -> None:
    rng = random.Random(11)
    for _ in range(3_000):
        html = _well_formed_html(rng)
        expected, actual = _Events(), _Events()
        parser = _StdlibParser(expected)
        parser.feed(html)
        parser.close()
        _HtmlTokenizer(html, actual).run()
        assert actual.events == expected.events, html


def test_markdown_steps_give_the_old_regexes_results() -> None:
    """The linear scans replace ``re.sub`` with these patterns; on short random strings of the characters that
    matter they must agree exactly."""
    image = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
    link = re.compile(r"\[([^\]]+)\]\(([^)\s]*)[^)]*\)")
    comment = re.compile(r"<!--.*?-->", re.DOTALL)
    tag = re.compile(r"</?[A-Za-z][\w:-]*(?:\s[^<>]*)?/?>")
    pieces = ["[", "]", "(", ")", "!", "a", " ", "\n", "<", ">", "-", "-->", "<!--", "/", "x=y", '"', "](", "![", "a:b"]
    rng = random.Random(5)
    for _ in range(50_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        assert _inline_links(text, image=True) == image.sub(r"\1", text), text
        assert _inline_links(text, image=False) == link.sub(r"\1", text), text
        assert _strip_html_comments(text) == comment.sub("", text), text
        assert _HTML_TAG.sub("", text) == tag.sub("", text), text


def test_heading_scan_gives_the_old_regexes_results() -> None:
    heading = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
    fenced = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", re.M | re.S)

    def old(body: str) -> list[tuple[int, str]]:
        blocks = [match.span() for match in fenced.finditer(body)]
        return [(m.start(), m.group(1)) for m in heading.finditer(body) if not any(b <= m.start() < e for b, e in blocks)]

    pieces = ["#", "# ", "##", "\n", " ", "\t", "a", "b c", "```", "~~~", "\n```\n", "#######", "x#"]
    rng = random.Random(6)
    for _ in range(50_000):
        body = "#" + "".join(rng.choice(pieces) for _ in range(rng.randint(0, 15)))
        assert [(offset, text) for offset, _level, text in _headings(body)] == old(body), body


def test_hostile_input_still_reads_as_before() -> None:
    assert html_to_text("<p>keep</p>" + "<a" * 5) == "keep\n\n" + "<a" * 5  # html.parser: unclosed tags are text
    assert html_to_text("<p>one</p><!-- never closed <p>two</p>") == "one\n\n<!-- never closed <p>two"
    assert html_to_text("<p>ok</p><![foo bar]>") == "ok"  # html.parser raised AssertionError (not indexable)
    assert html_to_text("<p>a &#" + "0" * 5_000 + "65; b &#" + "9" * 5_000 + "</p>") == "a A b"  # was ValueError
    assert markdown_to_text("[a](" * 3 + "[b](c) d") == "a d"
    assert markdown_to_text("[a](" * 3 + " d") == "[a]([a]([a]( d"
    assert markdown_to_text("![x](" * 3 + "y)") == "x"
    zalgo = "e" + "\u0301\u0316" * 40  # 80 combining marks: put in order 30 at a time, none lost
    ordered = "\u0316" * 15 + "\u0301" * 14 + "\u0316" * 15 + "\u0301" * 15 + "\u0316" * 10 + "\u0301" * 10
    assert normalise(zalgo, "text") == "\u00e9" + ordered  # é composed from e and the first acute


# ------------------------------------------------------------------ the per-document cap


def test_a_document_above_the_cap_is_cut_with_one_warning_and_still_indexed(pi_env, tmp_path) -> None:
    settings = pi_env(PI_EMBEDDER="hashing", PI_MAX_DOCUMENT_CHARS=5_000)
    database = Database(settings)
    sink = EmbeddedSink(tmp_path / "index.sqlite")
    warnings: list[str] = []
    handler = logger.add(warnings.append, level="WARNING", format="{level} {message}")
    try:
        body = "[a](" * 2_000 + "Sentence about the beginning. " * 100 + "TAILMARKER " * 1_000
        document = Document(
            id="chats:huge", source="chats", kind="chats", workspace_id="w", title="Huge", body=body, body_format="markdown"
        )
        stats = Indexer(sinks=[sink], embedder=HashingEmbedder(dimension=32), database=database, settings=settings).index(
            [document]
        )
    finally:
        logger.remove(handler)
        sink.close()
        database.dispose()
    capped = [warning for warning in warnings if "PI_MAX_DOCUMENT_CHARS" in warning]
    assert len(capped) == 1 and capped[0].startswith("WARNING") and "chats:huge" in capped[0], warnings
    assert stats.documents_indexed == 1 and not stats.failed
    reopened = EmbeddedSink(tmp_path / "index.sqlite")
    try:
        assert reopened.existing([chunk_id("chats:huge", 0)])
    finally:
        reopened.close()
    chunks = Indexer(sinks=[], embedder=HashingEmbedder(dimension=32), database=Database(settings), settings=settings).chunks_of(
        document
    )
    text = "".join(chunk.text for chunk in chunks)
    assert "[a](" in text and "TAILMARKER" not in text  # the first 5,000 characters, not the rest
