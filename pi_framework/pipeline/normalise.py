"""Turn a document body (HTML, Markdown or plain text) into clean text for chunking and full-text search.

HTML keeps its block boundaries as line breaks (Plane's ``description_stripped`` glues paragraphs
together, so it is never used), drops ``<script>``/``<style>``, decodes entities and keeps mentions and
links as readable text. Every format then goes through :func:`clean_text`: invalid UTF-8 replaced,
NUL and other control characters removed, ``&nbsp;`` and exotic spaces made plain, blank runs collapsed.
"""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser

#: tags that end a paragraph (a blank line in the text, where chunking prefers to cut)
_PARAGRAPH_TAGS = frozenset(
    "address article aside blockquote body details dialog div dl fieldset figure footer form h1 h2 h3 h4 h5 h6 header hr "
    "html main nav ol p pre section table ul".split()
)
#: tags that end a line
_LINE_TAGS = frozenset("br dd dt figcaption li summary tr".split())
_SKIPPED_TAGS = frozenset({"script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object"})
_VOID_TAGS = frozenset("area base br col embed hr img input link meta param source track wbr".split())
#: attributes that carry the readable name of a mention (Plane's ``<mention-component>`` and similar)
_MENTION_LABELS = ("label", "data-label", "entity_label", "data-entity-label", "name", "title")

# C0/C1 controls except tab and newline (NUL included), and U+FFFD left by invalid UTF-8: become spaces
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")
# zero-width characters and the BOM: removed (they sit inside words)
_INVISIBLE = re.compile(r"[\ufeff\u200b-\u200d\u2060]")
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*(?:\n\s*)+")


def to_str(body: str | bytes | None) -> str:
    """A valid Unicode string: bytes decoded as UTF-8 with invalid sequences replaced, lone surrogates replaced."""
    if body is None:
        return ""
    if isinstance(body, bytes | bytearray):
        return bytes(body).decode("utf-8", errors="replace")
    return body.encode("utf-8", errors="surrogatepass").decode("utf-8", errors="replace") if _has_surrogates(body) else body


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def clean_text(text: str) -> str:
    """Plain, tidy text: NFC, no control characters, single spaces, at most one blank line in a row."""
    text = unicodedata.normalize("NFC", to_str(text).replace("\r\n", "\n").replace("\r", "\n"))
    text = _INVISIBLE.sub("", _CONTROL.sub(" ", text))
    text = _SPACES.sub(" ", text)  # also turns \xa0 (&nbsp;) and other Unicode spaces into " "
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


class _TextExtractor(HTMLParser):
    """Collects text; iterative (no recursion), so deeply nested HTML costs nothing special."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._pending_break = 0  # newlines owed before the next text: 1 (line) or 2 (paragraph)
        self._skip_depth = 0
        self._links: list[tuple[str | None, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            if tag not in _VOID_TAGS:
                self._skip_depth += 1
            return
        if self._skip_depth:
            return
        attributes = dict(attrs)
        self._boundary(tag)
        if tag == "li":
            self._text("- ")
        elif tag in ("td", "th"):
            self._text(" ")
        elif tag == "img" and attributes.get("alt"):
            self._text(f" {attributes['alt']} ")
        elif tag == "a":
            self._links.append((attributes.get("href"), len(self.parts)))
        elif "mention" in tag or "mention" in (attributes.get("data-type") or "") or "mention" in (attributes.get("class") or ""):
            label = next((attributes[name] for name in _MENTION_LABELS if attributes.get(name)), None)
            label = label or attributes.get("entity_identifier") or attributes.get("data-id")
            if label:
                self._text(f" @{label.lstrip('@')} ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
            return
        if self._skip_depth:
            return
        if tag == "a" and self._links:
            href, start = self._links.pop()
            if href and not "".join(self.parts[start:]).strip() and not href.startswith(("javascript:", "#")):
                self._text(href)  # a link without text: its address is the readable part
        self._boundary(tag)

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self._text(data)

    def _boundary(self, tag: str) -> None:
        if tag in _PARAGRAPH_TAGS:
            self._pending_break = 2
        elif tag in _LINE_TAGS:
            self._pending_break = max(self._pending_break, 1)

    def _text(self, text: str) -> None:
        if self._pending_break and text.strip():
            self.parts.append("\n" * self._pending_break)
            self._pending_break = 0
        self.parts.append(text)


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(to_str(html))
    parser.close()
    return clean_text("".join(parser.parts))


_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]*)[^)]*\)")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_HTML_TAG = re.compile(r"</?[A-Za-z][\w:-]*(?:\s[^<>]*)?/?>")


def markdown_to_text(markdown: str) -> str:
    """Markdown stays Markdown (it reads well and embeds well); images become their alt text, links their text,
    and inline HTML tags and comments are dropped."""
    text = _HTML_COMMENT.sub("", to_str(markdown))
    text = _MD_IMAGE.sub(r"\1", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _HTML_TAG.sub("", text)
    return clean_text(text)


def normalise(body: str | bytes | None, body_format: str) -> str:
    """Clean text of *body* in *body_format* (``html``, ``markdown`` or ``text``)."""
    if body_format == "html":
        return html_to_text(body)
    if body_format == "markdown":
        return markdown_to_text(body)
    return clean_text(to_str(body))
