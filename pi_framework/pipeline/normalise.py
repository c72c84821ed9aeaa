"""Turn a document body (HTML, Markdown or plain text) into clean text for chunking and full-text search.

HTML keeps its block boundaries as line breaks (Plane's ``description_stripped`` glues paragraphs
together, so it is never used), drops ``<script>``/``<style>``, decodes entities and keeps mentions and
links as readable text. Every format then goes through :func:`clean_text`: invalid UTF-8 replaced,
NUL and other control characters removed, ``&nbsp;`` and exotic spaces made plain, blank runs collapsed.

Every step is linear in its input, whatever the input (issue 11: a Markdown link regex took cubic time on
``"[a](" * n`` and blocked a worker for hours, and a regex cannot be interrupted). So: no regex here can
backtrack super-linearly (bounded or possessive quantifiers, no nested unbounded groups), searches for a
closing delimiter are done with ``str.find`` or remembered (:class:`_NextMatch`) so no position is scanned
again and again, HTML is tokenised by :class:`_HtmlTokenizer` (html.parser's rules, which are quadratic on
unclosed tags, in linear time), and runs of combining marks are broken up before NFC (whose canonical
reordering is an insertion sort). ``tests/test_hostile_input.py`` holds the corpus; the indexer also caps a
document at ``PI_MAX_DOCUMENT_CHARS`` before it gets here.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from html import unescape

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
# (U+034F COMBINING GRAPHEME JOINER too: :func:`_stream_safe` inserts it)
_INVISIBLE = re.compile(r"[\ufeff\u200b-\u200d\u2060\u034f]")
_SPACES = re.compile(r"[^\S\n]+")
# three or more newlines; lines are stripped before, so no other whitespace sits between them
_BLANK_LINES = re.compile(r"\n\n\n+")
#: UAX #15 "stream-safe" limit: at most this many combining marks in a row before a grapheme joiner is put in
_MAX_COMBINING_RUN = 30
_CGJ = "\u034f"


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


@cache
def _combining_runs() -> re.Pattern[str]:
    """Runs longer than the stream-safe limit of characters that are (or decompose to) combining marks."""
    marks = [
        code
        for code in range(0x20000)  # no combining mark lies above U+1FFFF
        if unicodedata.combining(chr(code)) or unicodedata.combining(unicodedata.normalize("NFD", chr(code))[0])
    ]
    ranges: list[list[int]] = []
    for code in marks:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    members = "".join(f"{chr(low)}-{chr(high)}" if high > low else chr(low) for low, high in ranges)
    return re.compile(f"[{members}]{{{_MAX_COMBINING_RUN + 1},}}")


def _stream_safe(text: str) -> str:
    """Break runs of combining marks every 30 marks with U+034F (UAX #15 stream-safe text format).

    ``unicodedata.normalize`` puts a run of combining marks in canonical order with an insertion sort:
    100,000 alternating accents took 15 s. Real text has a handful of marks per letter; "zalgo" text has
    dozens, which stay as they are apart from the joiner (removed again with the other invisible characters).
    """
    if text.isascii():
        return text

    def split_run(match: re.Match[str]) -> str:
        run = match.group()
        return _CGJ.join(run[start : start + _MAX_COMBINING_RUN] for start in range(0, len(run), _MAX_COMBINING_RUN))

    return _combining_runs().sub(split_run, text)


def clean_text(text: str) -> str:
    """Plain, tidy text: NFC, no control characters, single spaces, at most one blank line in a row."""
    text = unicodedata.normalize("NFC", _stream_safe(to_str(text).replace("\r\n", "\n").replace("\r", "\n")))
    text = _INVISIBLE.sub("", _CONTROL.sub(" ", text))
    text = _SPACES.sub(" ", text)  # also turns \xa0 (&nbsp;) and other Unicode spaces into " "
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


class _TextExtractor:
    """Collects text from :class:`_HtmlTokenizer`'s events (html.parser's handler names); iterative (no
    recursion) and constant work per event, so deeply nested HTML costs nothing special."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self._pending_break = 0  # newlines owed before the next text: 1 (line) or 2 (paragraph)
        self._skip_depth = 0
        self._links: list[tuple[str | None, int]] = []  # open <a>: href, self._visible when it opened
        self._visible = 0  # parts with more than whitespace so far

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
            self._links.append((attributes.get("href"), self._visible))
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
            href, visible = self._links.pop()
            # (counted, not joined: joining the text of every open link was quadratic for nested links)
            if href and self._visible == visible and not href.startswith(("javascript:", "#")):
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
        visible = not text.isspace() and bool(text)
        if self._pending_break and visible:
            self.parts.append("\n" * self._pending_break)
            self._pending_break = 0
        self.parts.append(text)
        self._visible += visible


# html.parser's patterns (CPython 3.11), which its tokenisation below follows
_STARTTAG_OPEN = re.compile(r"<[a-zA-Z]")
_TAG_FIND = re.compile(r"([a-zA-Z][^\t\n\r\f />\x00]*)(?:\s|/(?!>))*")
_ATTR_FIND = re.compile(
    r"((?<=['\"\s/])[^\s/>][^\s/=>]*)(\s*=+\s*"
    r"('[^']*'|\"[^\"]*\"|(?!['\"])[^>\s]*))?(?:\s|/(?!>))*"
)
_LOCATE_STARTTAG_END = re.compile(
    r"""
  <[a-zA-Z][^\t\n\r\f />\x00]*       # tag name
  (?:[\s/]*                          # optional whitespace before attribute name
    (?:(?<=['"\s/])[^\s/>][^\s/=>]*  # attribute name
      (?:\s*=+\s*                    # value indicator
        (?:'[^']*'                   # LITA-enclosed value
          |"[^"]*"                   # LIT-enclosed value
          |(?!['"])[^>\s]*           # bare value
         )
        \s*                          # possibly followed by a space
       )?(?:\s|/(?!>))*
     )*
   )?
  \s*                                # trailing whitespace
""",
    re.VERBOSE,
)
_END_TAG_FIND = re.compile(r"</\s*([a-zA-Z][-.a-zA-Z0-9:_]*)\s*>")
_GT = re.compile(">")
_COMMENT_CLOSE = re.compile(r"--\s*>")
_MARKED_SECTION_CLOSE = re.compile(r"]\s*]\s*>")
_MS_MARKED_SECTION_CLOSE = re.compile(r"]\s*>")
_DECL_NAME = re.compile(r"[a-zA-Z][-_.a-zA-Z0-9]*\s*")
_CDATA_ELEMENTS = ("script", "style")
_TAG_CONTINUES = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ=/")


# a numeric character reference as html.unescape reads it: all its digits, then an optional ";"
_NUMERIC_CHARREF = re.compile(r"&#(?:([xX])(0*+)([0-9a-fA-F]*+)|(0*+)([0-9]*+));?")


def _shorter_charref(match: re.Match[str]) -> str:
    hexadecimal = match.group(1) or ""
    zeros, digits = match.group(2, 3) if hexadecimal else match.group(4, 5)
    if len(zeros) + len(digits) <= 16:
        return match.group()
    if len(digits) > (6 if hexadecimal else 7):  # above U+10FFFF, which html.unescape makes U+FFFD
        return "\ufffd"
    return f"&#{hexadecimal}{digits or '0'};"


def _unescape(text: str) -> str:
    """``html.unescape``, without its failure on a long number: ``int()`` refuses more than 4,300 digits
    (ValueError: the document could not be indexed) because converting them is quadratic. A reference with
    more than 16 digits is first written with its leading zeros removed, or as U+FFFD when it is too large."""
    if "&#" in text:
        text = _NUMERIC_CHARREF.sub(_shorter_charref, text)
    return unescape(text)


class _NextMatch:
    """The first match of *pattern* in *text* at or after a position, remembered.

    A new search starts only past the match found before (or never again once a search found nothing), so
    asking for every ``<`` of a document where the next ``-->`` (or ``>``) is, costs one scan of the document
    in total instead of one scan per ``<``.
    """

    def __init__(self, text: str, pattern: re.Pattern[str]) -> None:
        self.text, self.pattern = text, pattern
        self.searched_from: int | None = None
        self.found: re.Match[str] | None = None

    def at_or_after(self, position: int) -> re.Match[str] | None:
        if self.searched_from is not None and self.searched_from <= position:
            if self.found is None or position <= self.found.start():
                return self.found
        self.searched_from = position
        self.found = self.pattern.search(self.text, position)
        return self.found


class _HtmlTokenizer:
    """html.parser's tokenisation (CPython 3.11, ``convert_charrefs=True``, the whole document at once) in
    linear time.

    html.parser rescans the rest of the document from every ``<`` it cannot complete (``"<a" * n``, an
    unclosed ``<!--`` before every ``>``...), which is quadratic: 80 KB of ``<a`` took 3.4 s. Here every
    search for a closing delimiter is remembered (:class:`_NextMatch`), and three cases where html.parser
    would rescan are decided once instead: after the last ``>`` of a document nothing can be markup, so the
    rest is text (html.parser passes a few pieces of it on without decoding entities); a start tag that runs
    past a ``>`` inside a quoted value and is then incomplete is text up to that ``>`` as in html.parser, until
    the attributes scanned again that way add up to the document's length, then up to where its scan stopped;
    and an unknown ``<![name`` is a bogus comment (html.parser raises ``AssertionError``, so such a document
    could not be indexed at all). Otherwise the events are exactly html.parser's
    (``tests/test_hostile_input.py`` compares them).
    """

    def __init__(self, html: str, handler: _TextExtractor) -> None:
        self.html, self.handler = html, handler
        self.greater_than = _NextMatch(html, _GT)
        self.comment_close = _NextMatch(html, _COMMENT_CLOSE)
        self.marked_section_close = _NextMatch(html, _MARKED_SECTION_CLOSE)
        self.ms_marked_section_close = _NextMatch(html, _MS_MARKED_SECTION_CLOSE)
        self._cdata_element: str | None = None  # inside <script> or <style>: raw text up to its end tag
        self._rescan_budget = len(html)  # characters html.parser's way of handling incomplete tags may scan again

    def run(self) -> None:
        html, handler, length = self.html, self.handler, len(self.html)
        position = 0
        while position < length:
            if self._cdata_element:
                position = self._cdata_content(position)
                continue
            end = html.find("<", position)
            if end < 0:
                end = length
            if position < end:
                handler.handle_data(_unescape(html[position:end]))
            position = end
            if position == length:
                break
            if self.greater_than.at_or_after(position) is None:
                # no ">" left: nothing from here on can be complete markup, html.parser makes it all text
                handler.handle_data(_unescape(html[position:]))
                return
            if _STARTTAG_OPEN.match(html, position):
                end = self._start_tag(position)
            elif html.startswith("</", position):
                end = self._end_tag(position)
            elif html.startswith("<!--", position):
                close = self.comment_close.at_or_after(position + 4)
                end = close.end() if close else -1
            elif html.startswith("<?", position):
                end = self._after_greater_than(position + 2)
            elif html.startswith("<!", position):
                end = self._declaration(position)
            else:  # "<" then something else (there is a ">" later, so this is not the last character)
                handler.handle_data("<")
                end = position + 1
            if end < 0:  # incomplete: html.parser's fallback, text up to and with the next ">"
                end = self._after_greater_than(position + 1)
                handler.handle_data(_unescape(html[position:end]))
            position = end

    def _after_greater_than(self, position: int) -> int:
        found = self.greater_than.at_or_after(position)
        return found.end() if found else -1

    def _start_tag(self, start: int) -> int:
        html = self.html
        scan = _LOCATE_STARTTAG_END.match(html, start).end()  # type: ignore[union-attr]  # < + letter: always matches
        following = html[scan : scan + 1]
        if following == ">":
            end = scan + 1
        elif following == "/":
            end = scan + 2 if html.startswith("/>", scan) else -1
        elif following == "" or following in _TAG_CONTINUES:
            end = -1
        else:
            end = scan  # bogus input, returned as text below
        if end < 0:
            # incomplete: html.parser makes it text up to the next ">", and scans again from the next "<" what
            # this scan went past that ">" (inside a quoted value); once that repeated scanning adds up to the
            # document's length, the text goes on to where this scan stopped
            end = self._after_greater_than(start + 1)
            if scan > end:
                if scan - end > self._rescan_budget:
                    end = scan
                else:
                    self._rescan_budget -= scan - end
            self.handler.handle_data(_unescape(html[start:end]))
            return end
        match = _TAG_FIND.match(html, start + 1)
        tag = match.group(1).lower()  # type: ignore[union-attr]
        position = match.end()  # type: ignore[union-attr]
        attrs: list[tuple[str, str | None]] = []
        while position < end:
            attribute = _ATTR_FIND.match(html, position)
            if not attribute:
                break
            name, rest, value = attribute.group(1, 2, 3)
            if not rest:
                value = None
            elif value[:1] == "'" == value[-1:] or value[:1] == '"' == value[-1:]:
                value = value[1:-1]
            if value:
                value = _unescape(value)
            attrs.append((name.lower(), value))
            position = attribute.end()
        closing = html[position:end].strip()
        if closing not in (">", "/>"):
            self.handler.handle_data(html[start:end])
        elif closing.endswith("/>"):
            self.handler.handle_startendtag(tag, attrs)
        else:
            self.handler.handle_starttag(tag, attrs)
            if tag in _CDATA_ELEMENTS:
                self._cdata_element = tag
        return end

    def _cdata_content(self, position: int) -> int:
        """The raw content of ``<script>``/``<style>`` up to its end tag; without one, the rest is dropped."""
        element = self._cdata_element
        found = re.compile(rf"</\s*{element}\s*>", re.IGNORECASE).search(self.html, position)
        if not found:
            return len(self.html)
        if position < found.start():
            self.handler.handle_data(self.html[position : found.start()])
        self.handler.handle_endtag(element)  # type: ignore[arg-type]
        self._cdata_element = None
        return found.end()

    def _end_tag(self, start: int) -> int:
        html = self.html
        end = self._after_greater_than(start + 1)
        match = _END_TAG_FIND.match(html, start)
        if match:
            self.handler.handle_endtag(match.group(1).lower())
            return end
        name = _TAG_FIND.match(html, start + 2)
        if not name:
            return start + 3 if html.startswith("</>", start) else self._after_greater_than(start + 2)
        self.handler.handle_endtag(name.group(1).lower())
        return self._after_greater_than(name.end())

    def _declaration(self, start: int) -> int:
        html = self.html
        if html.startswith("<![", start):
            name = _DECL_NAME.match(html, start + 3)
            if name is None or name.end() == len(html):
                return -1 if name is not None or start + 3 == len(html) else self._after_greater_than(start + 2)
            keyword = name.group().strip().lower()
            if keyword in ("temp", "cdata", "ignore", "include", "rcdata"):
                close = self.marked_section_close.at_or_after(start + 3)
            elif keyword in ("if", "else", "endif"):
                close = self.ms_marked_section_close.at_or_after(start + 3)
            else:
                return self._after_greater_than(start + 2)
            return close.end() if close else -1
        if html[start : start + 9].lower() == "<!doctype":
            return self._after_greater_than(start + 9)
        return self._after_greater_than(start + 2)


def html_to_text(html: str) -> str:
    extractor = _TextExtractor()
    _HtmlTokenizer(to_str(html), extractor).run()
    return clean_text("".join(extractor.parts))


# "<" + tag + attributes without "<" or ">" + ">": possessive, so a failing tag costs one scan up to the next "<"
_HTML_TAG = re.compile(r"</?[A-Za-z][\w:-]*+(?:\s[^<>]*+)?/?>")


def _strip_html_comments(text: str) -> str:
    """``re.sub(r"<!--.*?-->", "", text, flags=re.S)`` in linear time (the regex rescans to the end from every
    ``<!--`` when none is closed)."""
    parts: list[str] = []
    position = 0
    while (start := text.find("<!--", position)) >= 0 and (end := text.find("-->", start + 4)) >= 0:
        parts.append(text[position:start])
        position = end + 3
    parts.append(text[position:])
    return "".join(parts)


def _inline_links(text: str, image: bool) -> str:
    r"""Markdown links ``[text](target)`` replaced by their text (images ``![alt](src)`` by their alt), exactly
    like ``re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)`` (``r"!\[([^\]]*)\]\([^)]*\)"``), in linear time.

    The regex took cubic time on ``"[a](" * n`` (every ``[`` scanned to the end, and the target's two
    quantifiers split every ``(`` run in all possible ways). A link's text cannot hold ``]``, so a link is: the
    first ``[`` (``![``) after the previous ``]``, the next ``](``, and the next ``)`` after that; each of the
    three searches only moves forward.
    """
    opener = "![" if image else "["
    parts: list[str] = []
    position = segment = 0  # text before position is settled; segment: where the search for an opener starts
    close = -1  # the first ")" after the last "](" looked at
    while (bracket := text.find("](", segment)) >= 0:
        if close < bracket + 2 and (close := text.find(")", bracket + 2)) < 0:
            break  # no ")" after this "](", so after no later one either
        previous = text.rfind("]", segment, bracket)
        start = text.find(opener, segment if previous < 0 else previous + 1, bracket)
        if start >= 0 and (image or start < bracket - 1):  # a link's text is not empty, an image's alt may be
            parts.append(text[position:start])
            parts.append(text[start + len(opener) : bracket])
            position = segment = close + 1
        else:
            segment = bracket + 1
    parts.append(text[position:])
    return "".join(parts)


def markdown_to_text(markdown: str) -> str:
    """Markdown stays Markdown (it reads well and embeds well); images become their alt text, links their text,
    and inline HTML tags and comments are dropped."""
    text = _strip_html_comments(to_str(markdown))
    text = _inline_links(text, image=True)
    text = _inline_links(text, image=False)
    text = _HTML_TAG.sub("", text)
    return clean_text(text)


def normalise(body: str | bytes | None, body_format: str) -> str:
    """Clean text of *body* in *body_format* (``html``, ``markdown`` or ``text``)."""
    if body_format == "html":
        return html_to_text(body)
    if body_format == "markdown":
        return markdown_to_text(body)
    return clean_text(to_str(body))
