"""Token-aware chunking: windows of the embedder's own tokens, with overlap, the title carried into each chunk.

A chunk's text is ``title + "\\n" + window`` and never exceeds the model's window (special tokens included), so
the model sees all of it. When a Markdown window starts after a heading, its first line is its **context** instead:
``title: heading path``, the headings the window sits under from the outermost in, joined by `` > `` (an H1 that only
repeats the title is left out), e.g. ``Cycles: When a cycle ends > Archiving cycles``. That line is embedded and
indexed (BM25) with the window, so a chunk from the middle of a long page still says what it is about. Windows prefer to end at a paragraph or sentence boundary
found in their last quarter, so chunks rarely cut a sentence in half.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from pi_framework.contract.contributions import Embedder

#: a title longer than this share of the window is cut, so every chunk keeps room for body text
_TITLE_SHARE = 4
#: characters a title or section heading may keep per token of its share (a long word is a single token)
_CHARS_PER_TOKEN = 16
#: a long body is tokenised in blocks of about this many characters, until its windows are full
_BLOCK_CHARS = 65_536
#: the context line of a window is its full heading path (pipeline version 2); False: only the nearest heading before
#: the window, the chunks of pipeline version 1 (``bench/retrieval.py`` measures both side by side)
HEADING_PATH = True
#: between the headings of a heading path
PATH_SEPARATOR = " > "
_WHITESPACE = re.compile(r"\s")
# "#" to "######", blanks, the rest of the line. Was ``^#{1,6}[ \t]+(.+?)[ \t#]*$``, whose lazy text and
# trailing run retried each other (quadratic per line: "# a" + "#" * 10_000 + "b" took 0.7 s); the trailing
# blanks and "#" are now stripped in Python (:func:`_heading_text`)
_MD_HEADING = re.compile(r"^(#{1,6})([ \t]++)([^\n]*+)", re.M)
# a fenced code block; an opener without a closer scans to the end once per fence type at most
_FENCED = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", re.M | re.S)


@dataclass(frozen=True)
class ChunkingParams:
    tokens: int
    overlap: int
    max_chunks: int

    def describe(self) -> str:
        """What goes into content hashes: changing any of these re-embeds everything."""
        return f"tokens={self.tokens};overlap={self.overlap}"


@dataclass(frozen=True)
class Window:
    index: int
    text: str


def _cut(text: str, spans: list[tuple[int, int]], limit: int) -> str:
    """*text* cut after *limit* tokens, and at ``limit * 16`` characters: a word longer than the model takes is
    one unknown token however long it is, and a title or heading is repeated in every chunk."""
    return (text if len(spans) <= limit else text[: spans[limit - 1][1]])[: limit * _CHARS_PER_TOKEN]


def _head_spans(text: str, embedder: Embedder, limit: int) -> list[tuple[int, int]]:
    """Token spans of the beginning of a title or heading that :func:`_cut` can keep (twice that, so the word
    cut at the end cannot change them): a 1 MB title is not tokenised whole."""
    return embedder.token_spans(text[: 2 * limit * _CHARS_PER_TOKEN])


def _token_spans(body: str, embedder: Embedder, needed: int) -> list[tuple[int, int]]:
    """Token spans of *body*, or of as much of its beginning as gives more than *needed* tokens.

    Tokenised in blocks that end before a whitespace character, which no token crosses, so the spans are
    exactly those of the whole body; tokenising what no window can hold was most of the time of a huge
    document (five times more of it for text of one token per character). Text without whitespace for twice
    a block's length is cut anyway, so the tokens where the blocks meet may differ from the whole body's.
    """
    if len(body) <= _BLOCK_CHARS:
        return embedder.token_spans(body)
    spans: list[tuple[int, int]] = []
    start = 0
    while start < len(body) and len(spans) <= needed:
        blank = _WHITESPACE.search(body, start + _BLOCK_CHARS, start + 2 * _BLOCK_CHARS)
        end = blank.start() if blank else min(len(body), start + 2 * _BLOCK_CHARS)
        spans.extend((begin + start, finish + start) for begin, finish in embedder.token_spans(body[start:end]))
        start = end
    return spans


def _boundary_end(text: str, spans: list[tuple[int, int]], start: int, end: int) -> int:
    """Best token index to end a window ``[start, end)`` at: after a paragraph break, else after a sentence."""
    floor = start + (end - start) * 3 // 4

    def gap(token: int) -> str:
        return text[spans[token][1] : spans[token + 1][0]]

    for token in range(end - 1, floor, -1):
        if "\n\n" in gap(token):
            return token + 1
    for token in range(end - 1, floor, -1):
        if "\n" in gap(token) or (text[spans[token][0] : spans[token][1]] in (".", "?", "!") and gap(token)):
            return token + 1
    return end


def _heading_text(blanks: str, rest: str) -> str | None:
    """What ``^#{1,6}[ \t]+(.+?)[ \t#]*$`` captured: *rest* without trailing blanks and "#" (at least its first
    character); for a line of only blanks, the last blank if there were two or more, else no heading."""
    if rest:
        return rest[: max(1, len(rest.rstrip(" \t#")))]
    return blanks[-1] if len(blanks) > 1 else None


def _headings(body: str) -> list[tuple[int, int, str]]:
    """Markdown headings of *body* outside fenced code blocks, as ``(offset, level, text)``, in order of offset."""
    if "#" not in body:
        return []
    fenced = [match.span() for match in _FENCED.finditer(body)]  # sorted, not overlapping
    fenced_starts = [begin for begin, _ in fenced]
    headings = []
    for match in _MD_HEADING.finditer(body):
        block = bisect_right(fenced_starts, match.start()) - 1  # the last block starting at or before the heading
        if block >= 0 and match.start() < fenced[block][1]:
            continue
        text = _heading_text(match.group(2), match.group(3))
        if text is not None:
            headings.append((match.start(), len(match.group(1)), text))
    return headings


def heading_parents(headings: list[tuple[int, int, str]]) -> list[int]:
    """For each heading, the index of the heading it sits under (the last one before it of a lower level), or -1."""
    parents: list[int] = []
    open_: list[int] = []  # indices of the open headings, levels increasing
    for index, (_offset, level, _text) in enumerate(headings):
        while open_ and headings[open_[-1]][1] >= level:
            open_.pop()
        parents.append(open_[-1] if open_ else -1)
        open_.append(index)
    return parents


def heading_path(
    headings: list[tuple[int, int, str]],
    parents: list[int],
    before: int,
    title: str = "",
    closed_by: int | None = None,
) -> list[str]:
    """The headings that text after ``headings[:before]`` sits under, outermost first (a heading closes every open
    heading of its level or deeper; *closed_by*: so does a heading of that level starting right there). A first-level
    heading equal to *title* is left out: it only repeats it. *parents*: :func:`heading_parents` of *headings* (so a
    path costs its depth, at most six headings, not a scan)."""
    path: list[tuple[int, str]] = []
    index = before - 1
    while index >= 0:
        _offset, level, text = headings[index]
        if closed_by is None or level < closed_by:
            path.append((level, text))
        index = parents[index]
    return [text for level, text in reversed(path) if not (level == 1 and text.strip().casefold() == title.strip().casefold())]


def _section_prefix(
    title: str,
    headings: list[tuple[int, int, str]],
    parents: list[int],
    offset: int,
    embedder: Embedder,
    limit: int,
    known: dict[tuple[int, bool], tuple[str, int]],
) -> tuple[str, int]:
    """For a window starting after a heading (Markdown): ``("<title>: <context>\n", extra tokens)``, else ``("", 0)``.

    The context is the window's heading path (:func:`heading_path`; a window starting on a heading shows that heading
    itself, so its context is what encloses it), cut to *limit* tokens; with :data:`HEADING_PATH` off, the nearest
    heading before the window. *known* remembers the answer per position among the headings, so each heading path is
    tokenised once, not once per window.
    """
    before = bisect_left(headings, offset, key=lambda heading: heading[0])  # headings[:before] start before offset
    on_heading = HEADING_PATH and before < len(headings) and headings[before][0] == offset
    key = (before, on_heading)
    if key not in known:
        if HEADING_PATH:
            closed_by = headings[before][1] if on_heading else None
            section = PATH_SEPARATOR.join(heading_path(headings, parents, before, title, closed_by))
        else:
            section = headings[before - 1][2] if before else ""
        if not section:
            known[key] = "", 0
        else:
            section = _cut(section, _head_spans(section, embedder, limit), limit).strip()
            label = f"{title}: {section}" if title else section
            known[key] = f"{label}\n", len(embedder.token_spans(label)) - len(embedder.token_spans(title))
    return known[key]


def split(title: str, body: str, embedder: Embedder, params: ChunkingParams) -> tuple[list[Window], bool]:
    """Windows of *body* with *title* in front of each; returns ``(windows, truncated)``.

    ``truncated`` is true when the body had more than ``params.max_chunks`` windows (the rest is dropped).
    """
    window = min(params.tokens, embedder.max_tokens) - embedder.special_tokens
    title_limit = max(1, window // _TITLE_SHARE)
    title_spans = _head_spans(title, embedder, title_limit) if title else []
    title = _cut(title, title_spans, title_limit).strip()
    prefix = f"{title}\n" if title else ""
    room = window - min(len(title_spans), title_limit)
    overlap = min(params.overlap, room // 2)
    if not body:
        return ([Window(0, title)] if title else []), False
    # tokenising a huge body costs time for nothing: cut it well beyond what max_chunks windows can hold
    body = body[: params.max_chunks * room * 16]
    # max_chunks windows end before token max_chunks * room (each starts at or before the previous one's end)
    spans = _token_spans(body, embedder, params.max_chunks * room)
    if len(spans) <= room:
        return [Window(0, prefix + body)], False
    windows: list[Window] = []
    headings = _headings(body)
    parents = heading_parents(headings)
    sections: dict[tuple[int, bool], tuple[str, int]] = {}
    start = 0
    while start < len(spans) and len(windows) < params.max_chunks:
        head, extra = _section_prefix(title, headings, parents, spans[start][0], embedder, title_limit, sections)
        end = min(start + room - extra, len(spans))
        if end < len(spans):
            end = _boundary_end(body, spans, start, end)
        windows.append(Window(len(windows), (head or prefix) + body[spans[start][0] : spans[end - 1][1]].strip()))
        if end == len(spans):
            return windows, False
        start = max(end - overlap, start + 1)
    return windows, True
