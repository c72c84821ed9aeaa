"""Token-aware chunking: windows of the embedder's own tokens, with overlap, the title carried into each chunk.

A chunk's text is ``title + "\\n" + window`` and never exceeds the model's window (special tokens
included), so the model sees all of it. Windows prefer to end at a paragraph or sentence boundary
found in their last quarter, so chunks rarely cut a sentence in half.
"""

from __future__ import annotations

from dataclasses import dataclass

from pi_framework.embedding import Embedder

#: a title longer than this share of the window is cut, so every chunk keeps room for body text
_TITLE_SHARE = 4


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
    return text if len(spans) <= limit else text[: spans[limit - 1][1]]


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


def split(title: str, body: str, embedder: Embedder, params: ChunkingParams) -> tuple[list[Window], bool]:
    """Windows of *body* with *title* in front of each; returns ``(windows, truncated)``.

    ``truncated`` is true when the body had more than ``params.max_chunks`` windows (the rest is dropped).
    """
    window = min(params.tokens, embedder.max_tokens) - embedder.special_tokens
    title_limit = max(1, window // _TITLE_SHARE)
    title_spans = embedder.token_spans(title) if title else []
    title = _cut(title, title_spans, title_limit).strip()
    prefix = f"{title}\n" if title else ""
    room = window - min(len(title_spans), title_limit)
    overlap = min(params.overlap, room // 2)
    if not body:
        return ([Window(0, title)] if title else []), False
    # tokenising a huge body costs time for nothing: cut it well beyond what max_chunks windows can hold
    body = body[: params.max_chunks * room * 16]
    spans = embedder.token_spans(body)
    if len(spans) <= room:
        return [Window(0, prefix + body)], False
    windows: list[Window] = []
    start = 0
    while start < len(spans) and len(windows) < params.max_chunks:
        end = min(start + room, len(spans))
        if end < len(spans):
            end = _boundary_end(body, spans, start, end)
        windows.append(Window(len(windows), prefix + body[spans[start][0] : spans[end - 1][1]].strip()))
        if end == len(spans):
            return windows, False
        start = max(end - overlap, start + 1)
    return windows, True
