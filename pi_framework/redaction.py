"""Secrets never printed: passwords in URLs, token-like parameters, bearer tokens, configured secret values.

Every path that shows a URL or an error text to a person or a log goes through here: ``pi settings``,
``pi health`` (and the ``health_check`` task), database and OpenSearch errors, and every log line
(:mod:`pi_framework.log` installs :func:`redact_record` as loguru's patcher and redacts the final text of its
sink, tracebacks included). Nothing here raises: on input it cannot handle it masks more, never less.

In free text (:func:`redact_text`) a URL's password may hold white space and quotes too (``pi:it's a
secret@db``: see :func:`_url_with_password`), and the value of a secret-named pair is masked whatever its form:
``password=…``, ``password: …`` and ``password = …`` (to the end of the line), ``X-Api-Key: …`` and other headers,
``"password": "…"`` (JSON, escaped quotes), ``{'password': b'…'}`` (reprs). JSON log lines stay JSON.

URLs are parsed by hand, not with :func:`urllib.parse.urlsplit`, because a password may hold ``/ # ? @ :``
unencoded (SQLAlchemy accepts ``postgresql://pi:s3cr/et#x@db/pi``), and ``urlsplit`` then ends the host part
at the first ``/`` and shows the rest of the password as a path. Here the userinfo is everything up to the
**last** ``@`` after ``scheme://``; an unencoded ``@`` later in the URL (``?email=a@b``) makes more of the URL
masked, never less.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

__all__ = [
    "MASK",
    "clear_registered_secrets",
    "is_secret_name",
    "redact_data",
    "redact_record",
    "redact_text",
    "redact_url",
    "register_secrets",
    "settings_secrets",
    "url_secrets",
    "userinfo_needs_encoding",
]

MASK = "***"

#: query (and key=value) parameter names whose value is a secret (compared lower-case, ``-`` read as ``_``)
SECRET_PARAMS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "auth_token",
        "session_token",
        "api_key",
        "apikey",
        "key",
        "auth",
        "authorization",
        "sslpassword",
        "client_secret",
        "private_key",
        "signature",
        "sig",
        "x_amz_signature",
        "x_amz_credential",
        "x_amz_security_token",
        "credential",
        "credentials",
        "jwt",
        "cookie",
        "set_cookie",
        "passphrase",
    }
)
_SECRET_SUFFIXES = ("password", "passwd", "secret", "token", "_key", "apikey", "signature", "credentials")
#: in free text (log lines, errors) generic names like ``key`` or ``auth`` are too common to mask
_GENERIC = frozenset({"key", "auth", "sig", "pass", "signature"})

#: registered secrets (every log line) shorter than this are not scrubbed as literal text: they would mask
#: ordinary words; secrets passed to one call (an error of one sink, a health report) need 3 characters
MIN_LITERAL_SECRET = 6
MIN_GIVEN_SECRET = 3

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
#: ``name=`` inside a URL, after ``? & # ;`` (query, fragment, matrix parameters)
_URL_PARAM = re.compile(r"([?&#;])([^=&?#;/\s]*)=")
#: a URL inside free text: it ends at white space or a quote (JSON log lines keep their structure)
_URL_IN_TEXT = re.compile(r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]*")
#: the start of a URL in free text, and the ``user:`` that may follow it (a password comes next)
_URL_START = re.compile(r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://")
_USER_COLON = re.compile(r"[^\s:/?#@'\"<>`\[\]\\]*:")
#: ``host:port`` rather than ``user:password``: digits, then the path, the end of the URL or of the text
_PORT = re.compile(r"\d{1,5}(?=[/?#\s'\"]|$)")
_PORT_AND_PATH = re.compile(r"\d{1,5}[/?#]")
#: the rest of a URL after its ``@`` (host, path, query): it ends at white space or a quote
_URL_REST = re.compile(r"[^\s'\"<>`]*")
#: where a URL ends in free text once its password has an ``@``: white space (or a quote, see :func:`_closes`)
_URL_END = re.compile(r"\s")
#: an ``@`` that can end a password: a host (or the path of a host-less URL) follows it
_VALID_AT = re.compile(r"@(?=[^\s'\"<>`])")
#: a URL that starts a new word (after white space, a quote, a bracket...): a password in the text before it ends
_WORD_URL = re.compile(r"(?:(?<=[\s'\"(\[{<,=])|^)[A-Za-z][A-Za-z0-9+.\-]*://", re.MULTILINE)
_QUOTE = re.compile(r"['\"]")
#: what may follow the closing quote of a quoted value: white space, a separator, a bracket, the end of the line
_AFTER_VALUE = re.compile(r"(?:\s|[,:;)\]}>]|\\[nrt]|$)")
#: what may follow a quote that closes a string (JSON, a repr): a separator, a bracket, the end of the line
_AFTER_CLOSING_QUOTE = re.compile(r"[ \t]*(?:[,:;)\]}>]|\\[nrt]|\r|$)", re.MULTILINE)
#: ``name=value``, ``name: value``, ``name = value``, ``"name": value``, ``'name': value``, ``\"name\": value``
#: (``Name: value`` is an HTTP header too); the value is read by :func:`_pair_value`
_PAIR = re.compile(
    r"""(?:(?<![\w.\\/])|(?<=\\[nrt]))(?<!\w-)(?P<q>\\?["']|)(?P<name>[A-Za-z_][\w.\-]*)(?P=q)(?P<sp1>[ \t]*)(?P<sep>[:=])(?![:=])(?P<sp2>[ \t]*)"""
)
#: a string prefix before a quoted value (``b'...'`` in a repr of bytes)
_STRING_PREFIX = re.compile(r"[bBrRuU]{0,2}(?=\\?['\"])")
#: an unquoted value after a quoted name (JSON number, a repr's ``None``), and words that are no secret there
_BARE_SCALAR = re.compile(r"[^\s,;:)\]}'\"{\[\\]+")
_NOT_A_SECRET = frozenset({"null", "true", "false", "None", "True", "False"})
#: ``name=value`` without spaces: the value ends at white space or ``&``
_TIGHT_VALUE = re.compile(r"[^\s&]*")
#: nothing but blanks up to the end of the line
_BLANK_TO_EOL = re.compile(r"[ \t]*(?:[\r\n]|\Z)")
#: a JSON escape ends a value that runs to the end of the line (``\n`` in a JSON log line's text)
_JSON_ESCAPE = re.compile(r"\\[nrt]")
_AUTH_SCHEME = re.compile(r"(?i)(?:bearer|basic|token|digest|negotiate)\s+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=\-]{4,}")
_AUTH_HEADER = re.compile(
    r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?(?!(?:(?:bearer|basic|token|digest|negotiate)\s+)?\*\*\*)(?:(?:bearer|basic|token|digest|negotiate)\s+)?)[^\s\"',}\\]+"
)
#: a user name alone that is really a token (``https://<40 hex>@github.com``)
_TOKEN_LIKE_USER = re.compile(r"[A-Za-z0-9_\-.]{32,}")
_GITHUB_TOKEN = re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{20,})\b")
#: urllib's error for a password holding ``/ # ?``: the "port" is the start of the password
_BAD_PORT = re.compile(r"(Port could not be cast to integer value as )('[^']*'|\"[^\"]*\"|\S+)")
#: libpq names the host it could not resolve; with an ``@`` in the password that "host" holds part of it
_HOST_WITH_AT = re.compile(r"""(?i)\b(host\s+name\s+["']?)[^"'\s]*@""")

_registered: set[str] = set()


# ---------------------------------------------------------------------- names
def is_secret_name(name: object, *, strict: bool = False) -> bool:
    """Does a parameter or variable called *name* hold a secret? (``API_TOKEN``, ``sslpassword``, ``api-key``…)

    *strict* leaves out generic names (``key``, ``auth``, ``sig``): for free text, where ``key=...`` is
    more often a cache key than a credential.
    """
    try:
        normal = unquote(str(name)).strip().lower().replace("-", "_")
    except Exception:  # noqa: BLE001 - never raise
        return False
    if not normal:
        return False
    if normal in SECRET_PARAMS:
        return not (strict and normal in _GENERIC)
    return normal.endswith(_SECRET_SUFFIXES) or "password" in normal or "secret" in normal


# ---------------------------------------------------------------------- URLs
def _mask_params(text: str) -> str:
    """*text* (a URL's part after the host) with the value of every secret-named parameter masked."""
    out: list[str] = []
    position = 0
    while match := _URL_PARAM.search(text, position):
        start = match.end()
        if is_secret_name(match.group(2)):
            end = text.find("&", start)  # a secret value ends at the next '&' only: '#', '?', ';' may be in it
            end = len(text) if end == -1 else end
            out.append(text[position:start])
            if end > start:
                out.append(MASK)
            position = end
        else:
            out.append(text[position:start])
            position = start
    out.append(text[position:])
    return "".join(out)


def _split(url: str) -> tuple[str, str | None, str]:
    """``(prefix, userinfo or None, rest)`` of *url*: prefix is ``scheme://`` (or ``//``, or empty)."""
    match = _SCHEME.match(url)
    if match and url.startswith("//", match.end()):
        start = match.end() + 2
    elif url.startswith("//"):
        start = 2
    else:
        head = url[: url.rfind("@")] if "@" in url else ""
        if ":" in head and not re.search(r"[\s/]", head.split(":", 1)[0]):
            start = 0  # "user:password@host/db" without a scheme (a "mailto:a@b" is masked too: safe side)
        else:
            return "", None, url  # no authority: sqlite:relative.db, a path, a word (parameters still masked)
    prefix, rest = url[:start], url[start:]
    at = rest.rfind("@")
    if at == -1:
        return prefix, None, rest
    return prefix, rest[:at], rest[at:]


def redact_url(url: Any) -> Any:
    """*url* with its password and every token-like parameter replaced by ``***`` (safe to print or log).

    ``None`` and ``""`` come back unchanged; anything else comes back as a string. The user name is kept
    unless it looks like a token (``https://ghp_…@github.com``). Never raises: input it cannot read gives ``***``.
    """
    if url is None or url == "":
        return url
    try:
        text = url.decode(errors="replace") if isinstance(url, bytes | bytearray) else str(url)
        prefix, userinfo, rest = _split(text)
        if userinfo is not None:
            user, colon, password = userinfo.partition(":")
            if _GITHUB_TOKEN.fullmatch(user) or (not colon and _TOKEN_LIKE_USER.fullmatch(user)):
                user = MASK
            userinfo = f"{user}:{MASK}" if colon and password else f"{user}{colon}"
        return prefix + (userinfo or "") + _mask_params(rest)
    except Exception:  # noqa: BLE001 - a redactor that raises would print the secret in its traceback
        return MASK


def userinfo_needs_encoding(url: Any) -> bool:
    """Whether *url*'s user name or password holds an unencoded ``/ ? # @``: SQLAlchemy copes, but urllib (and so
    kombu, opensearch-py, requests) ends the host part there and would use a piece of the password as host or port."""
    try:
        _prefix, userinfo, _rest = _split(str(url))
    except Exception:  # noqa: BLE001
        return False
    return bool(userinfo) and any(char in userinfo for char in "/?#@")  # type: ignore[operator]


def url_secrets(url: Any, *, pieces: bool = False) -> set[str]:
    """The secret values in *url* (password, secret parameters), raw and percent-decoded, for literal scrubbing.

    *pieces* adds the parts of a password between ``/ ? # @ : & =`` (4 characters or more): a parser that ends the
    host part at one of them quotes a piece in its error (``invalid connection option "hunter22@db/pi?…"``,
    ``Port could not be cast to integer value as 's3cr'``).
    """
    found: set[str] = set()
    if not url:
        return found
    try:
        text = str(url)
        _prefix, userinfo, rest = _split(text)
        if userinfo and ":" in userinfo:
            found.add(userinfo.partition(":")[2])
        for match in _URL_PARAM.finditer(rest):
            if is_secret_name(match.group(2)):
                end = rest.find("&", match.end())
                found.add(rest[match.end() : len(rest) if end == -1 else end])
        found |= {unquote(value) for value in found}
        if pieces and userinfo and ":" in userinfo:
            found |= {piece for piece in re.split(r"[/?#@:&=]", userinfo.partition(":")[2]) if len(piece) >= 4}
        user = (userinfo or "").partition(":")[0]
        if _GITHUB_TOKEN.fullmatch(user) or (userinfo == user and _TOKEN_LIKE_USER.fullmatch(user)):
            found.add(user)
    except Exception:  # noqa: BLE001
        return set()
    return {value for value in found if value}


# ---------------------------------------------------------------------- secrets known to this process
def settings_secrets(settings: Any) -> set[str]:
    """Secret values held by a settings object: ``SecretStr`` fields, secret-named fields, passwords in URLs
    (with their pieces, see :func:`url_secrets`)."""
    found: set[str] = set()
    try:
        values = settings.model_dump() if hasattr(settings, "model_dump") else dict(vars(settings))
    except Exception:  # noqa: BLE001
        return found
    for name, value in values.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if hasattr(item, "get_secret_value"):
                item = item.get_secret_value()
            if not isinstance(item, str) or not item:
                continue
            if is_secret_name(name):
                found.add(item)
            found |= url_secrets(item, pieces=True)
    return found


def register_secrets(*values: str | None) -> None:
    """Scrub these literal values from every :func:`redact_text` from now on (shorter than 6 characters: ignored)."""
    _registered.update(value for value in values if isinstance(value, str) and len(value) >= MIN_LITERAL_SECRET)


def clear_registered_secrets() -> None:
    """Forget :func:`register_secrets` (tests)."""
    _registered.clear()


# ---------------------------------------------------------------------- free text
def _backslashes_before(text: str, index: int, floor: int = 0) -> int:
    count = 0
    while index - count - 1 >= floor and text[index - count - 1] == "\\":
        count += 1
    return count


def _closes(text: str, index: int) -> bool:
    """Is the quote at *index* the end of a string (JSON, a repr): unescaped, and a separator, a bracket or the
    end of the line follows? (A quote inside a password, ``it's``, is followed by more of the password.)"""
    return _backslashes_before(text, index) % 2 == 0 and _AFTER_CLOSING_QUOTE.match(text, index + 1) is not None


_LINE_BREAK = re.compile(r"[\r\n]")


def _line_breaks(text: str) -> list[int]:
    return [match.start() for match in _LINE_BREAK.finditer(text)]


def _line_end(breaks: list[int], position: int, length: int) -> int:
    """The first of the line *breaks* at or after *position*, else *length* (the end of the text)."""
    index = bisect.bisect_left(breaks, position)
    return breaks[index] if index < len(breaks) else length


class _UrlScan:
    """Positions in one text, found once (linear time however many URLs it holds): ``@`` that can end a password,
    quotes that close a string (``'`` and ``"`` apart), URLs that start a word."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.ats = [match.start() for match in _VALID_AT.finditer(text)]
        self.quotes: dict[str, list[int]] = {"'": [], '"': []}  # the quotes that close a string
        self.opened: dict[str, list[int]] = {"'": [], '"': []}  # every quote
        for match in _QUOTE.finditer(text):
            index = match.start()
            self.opened[text[index]].append(index)
            if _closes(text, index):
                self.quotes[text[index]].append(index)
        self.lines = _line_breaks(text)
        self.words = [match.start() for match in _WORD_URL.finditer(text)]

    @staticmethod
    def first(positions: list[int], low: int, high: int) -> int:
        """The first of *positions* in ``[low, high)``, or -1."""
        index = bisect.bisect_left(positions, low)
        return positions[index] if index < len(positions) and positions[index] < high else -1

    @staticmethod
    def last(positions: list[int], low: int, high: int) -> int:
        """The last of *positions* in ``[low, high)``, or -1."""
        index = bisect.bisect_left(positions, high) - 1
        return positions[index] if index >= 0 and positions[index] >= low else -1

    def closing_quote(self, url: int, low: int, high: int) -> int:
        """The first quote in ``[low, high)`` that closes a string the URL at *url* is in: the URL's own quote if
        one opens it (``"…it's…"``: the other quote is part of the password), else a quote opened before the URL on
        its line (a bare log line ``… pi:it's", x@db`` has no string to close)."""
        opening = self.text[url - 1] if url else ""
        if opening in ("'", '"'):
            quotes: tuple[str, ...] = (opening,)
        else:
            line_start = self.last(self.lines, 0, url) + 1
            quotes = tuple(quote for quote in "'\"" if self.last(self.opened[quote], line_start, url) != -1)
        found = -1
        for quote in quotes:
            index = self.first(self.quotes[quote], low, high)
            found = index if found == -1 or -1 < index < found else found
        return found


def _url_with_password(text: str, start: int, authority: int, scan: _UrlScan) -> tuple[str, int] | None:
    """The URL at *start* (``scheme://user:…``) redacted, and where it ends; ``None`` when it has no password.

    In free text a password may hold white space, quotes and ``@`` (``pi:it's a secret@db``): it runs from the
    colon to the **last** ``@`` before the end of the URL, the URL ending at white space or at a quote that closes
    a string, but only after a first ``@``. Before that first ``@`` the password ends only at the end of the line,
    at a quote that closes a string (JSON, a repr: the URL's own quote if one opens it) or at a new URL. Before
    such an end, ``host:port`` (``http://search:9200", "email": "a@b"``) has no password; ``user:pass`` has its
    start masked. Ambiguous text is masked rather than shown: ``smtp://mail:25 to bob@example.com`` shows
    ``smtp://mail:***@example.com``. What stays ambiguous, and is read as ordinary text:

    * ``host:port/path`` then white space (``http://plane:8000/api for bob@corp``): so the password ``8000/x y``
      is shown;
    * an ``@``, a host, then white space (``pi:p@ss word@db``): only ``p`` is masked (``ss word`` is shown);
    * ``host:port`` then a quote closing a string opened before the URL on its line (``"pi:5432", x@db``).
    """
    user = _USER_COLON.match(text, authority)
    if user is None:
        return None
    colon = user.end() - 1
    line_end = _line_end(scan.lines, colon, len(text))
    first_at = scan.first(scan.ats, colon + 2, line_end)  # a password of one character at least
    empty = scan.first(scan.ats, colon + 1, colon + 2) != -1  # "u:@host"
    if first_at == -1:
        if not empty:
            return None  # no "@" on the line: host:port, a user name alone (redact_url handles the token)
        first_at = colon + 1
    else:
        quote = scan.closing_quote(start, colon + 2, first_at)
        word = scan.first(scan.words, colon + 1, first_at)
        block = word if quote == -1 else quote if word == -1 else min(quote, word)
        if not empty and _PORT_AND_PATH.match(text, colon + 1) and _URL_END.search(text, colon + 1, first_at):
            return None  # "http://plane:8000/api/x for bob@corp": host:port/path, then text
        if block != -1:  # the "@" may belong to later text (a JSON field, another URL)
            if not empty and _PORT.match(text, colon + 1):
                return None  # host:port (redact_url masks its parameters)
            end = colon + 1 + (len(text[colon + 1 : block].rstrip()) or block - colon - 1)
            end = _keep_escape(text, colon + 1, end)
            if end <= colon + 1:
                return None
            return f"{_shown_user(text[authority:colon], text[start:authority])}:{MASK}", end
    url_end = _URL_END.search(text, first_at, line_end)
    region_end = url_end.start() if url_end else line_end
    quote = scan.closing_quote(start, first_at, region_end)
    region_end = quote if quote != -1 else region_end
    at = scan.last(scan.ats, first_at, region_end)
    rest_end = _URL_REST.match(text, at).end()  # type: ignore[union-attr]
    password = f":{MASK}" if at > colon + 1 else ":"
    return _shown_user(text[authority:colon], text[start:authority]) + password + _mask_params(text[at:rest_end]), rest_end


def _shown_user(user: str, prefix: str) -> str:
    return prefix + (MASK if _GITHUB_TOKEN.fullmatch(user) else user)


def _redact_urls(text: str) -> str:
    """Every ``scheme://`` URL in *text* redacted (see :func:`_url_with_password`, :func:`redact_url`)."""
    scan = _UrlScan(text)
    out: list[str] = []
    position = 0
    while match := _URL_START.search(text, position):
        out.append(text[position : match.start()])
        found = _url_with_password(text, match.start(), match.end(), scan)
        if found is None:
            token_end = _URL_IN_TEXT.match(text, match.start()).end()  # type: ignore[union-attr]
            out.append(redact_url(text[match.start() : token_end]))
            position = token_end
        else:
            out.append(found[0])
            position = found[1]
    out.append(text[position:])
    return "".join(out)


def _quoted_end(text: str, start: int, quote: str, escaped: bool, end: int) -> int:
    r"""Where the string opened by *quote* before *start* closes (the index of its closing quote, or of the
    backslash before it when the quotes themselves are escaped: ``\"…\"`` in a JSON string), -1 if not on this line.

    A closing quote is unescaped and followed by white space, a separator, a bracket or the end of the line: in
    ``password: 'it's a secret'`` the second quote is part of the value.
    """
    while (index := text.find(quote, start, end)) != -1:
        count = _backslashes_before(text, index, start)
        if ((count % 4 == 1) if escaped else (count % 2 == 0)) and _AFTER_VALUE.match(text, index + 1):
            return index - 1 if escaped else index
        start = index + 1
    return -1


def _keep_escape(text: str, start: int, end: int) -> int:
    r"""*end*, moved so that ``text[start:end]`` does not end in a backslash that escapes ``text[end]``: masking the
    backslash alone would change a JSON string (``\"`` would become ``"``, ``\\t`` a tab)."""
    if end >= len(text) or text[end] in "\r\n" or not _backslashes_before(text, end, start) % 2:
        return end
    return end - 1 if end - 1 > start else end + 1


def _unescaped(text: str, matches: Iterable[re.Match[str]]) -> int:
    """The start of the first of *matches* (of a backslash sequence) whose backslash is not itself escaped, or -1."""
    for match in matches:
        if not _backslashes_before(text, match.start()) % 2:
            return match.start()
    return -1


def _value_end(text: str, start: int, end: int, *, tight: bool) -> int:
    r"""Where an unquoted value from *start* up to *end* ends: before a quote that closes a string or a JSON escape
    (``\n``); a *tight* value (``name=value``) also before a quote ending the word, and without ``) ] } , ; . >``."""
    for quote in _QUOTE.finditer(text, start + 1, end):  # a value does not end before it starts
        index = quote.start()
        if (tight and index == end - 1) or _closes(text, index):
            end = index
            break
    escape = _unescaped(text, _JSON_ESCAPE.finditer(text, start + 1, end))
    end = escape if escape != -1 else end
    if tight:
        stripped = text[start:end].rstrip(")]},;.>")
        return start + len(stripped) if stripped else end
    return start + len(text[start:end].rstrip())


def _pair_value(text: str, start: int, line_end: int, *, quoted_name: bool, tight: bool) -> tuple[int, int] | None:
    """The span of the value of a secret-named pair starting at *start* (its content, for a quoted value), on the
    line ending at *line_end*."""
    prefix = _STRING_PREFIX.match(text, start, line_end)
    if prefix:
        escaped = text[prefix.end()] == "\\"
        quote = text[prefix.end() + escaped]
        content = prefix.end() + escaped + 1
        close = _quoted_end(text, content, quote, escaped, line_end)
        if close > content:
            return (content, close) if text[content:close] != MASK else None
        if close == content and (quoted_name or tight):
            return None  # an empty value ("password": "", password='')
        if close == content and _BLANK_TO_EOL.match(text, close + 1):
            return start, close + 1 + escaped  # "X-Api-Key: ''": quotes are no syntax in a header, they may be the value
        quoted_name, tight = False, False  # no closing quote on the line (or "password: '')x"): the rest is the value
    if text.startswith(MASK, start):
        return None
    if quoted_name:  # "password": 123 (JSON), 'password': None (a repr)
        scalar = _BARE_SCALAR.match(text, start, line_end)
        return None if scalar is None or scalar.group() in _NOT_A_SECRET else scalar.span()
    end = _TIGHT_VALUE.match(text, start, line_end).end() if tight else line_end  # type: ignore[union-attr]
    end = _keep_escape(text, start, _value_end(text, start, end, tight=tight))
    return (start, end) if end > start else None


def _redact_pairs(text: str) -> str:
    """The value of every secret-named pair in *text* masked: ``password=…`` (libpq DSNs, reprs), ``password: …``
    and ``password = …`` (to the end of the line: YAML, INI, HTTP headers such as ``X-Api-Key: …``),
    ``"password": "…"`` (JSON, dict reprs; ``b'…'``, escaped quotes)."""
    out: list[str] = []
    position = 0
    search_from = 0
    breaks = _line_breaks(text)
    while match := _PAIR.search(text, search_from):
        search_from = match.end()
        name = match.group("name")
        authorization = name.lower().replace("-", "_").endswith("authorization")
        if not authorization and not is_secret_name(name, strict=True):
            continue
        quoted_name = bool(match.group("q"))
        tight = not quoted_name and not match.group("sp1") and not match.group("sp2")
        line_end = _line_end(breaks, match.end(), len(text))
        span = _pair_value(text, match.end(), line_end, quoted_name=quoted_name, tight=tight)
        if span is not None and authorization:  # its scheme stays ("Bearer ***", as _AUTH_HEADER shows it)
            scheme = _AUTH_SCHEME.match(text, span[0], span[1])
            span = (scheme.end(), span[1]) if scheme else span
            span = None if span[0] >= span[1] or text.startswith(MASK, span[0]) else span
        if span is not None:
            out.append(text[position : span[0]])
            out.append(MASK)
            position = search_from = span[1]
    out.append(text[position:])
    return "".join(out)


def redact_text(text: Any, secrets: Iterable[str] = ()) -> str:
    """*text* (a log line, an error message, a traceback) with every secret in it masked.

    Masks: passwords and secret parameters of every ``scheme://`` URL in it (a password may hold white space,
    quotes, ``@``: see :func:`_url_with_password`), the values of secret-named pairs (``password=…``,
    ``password: …``, ``password = …``, ``"password": "…"``, ``{'password': b'…'}``, headers such as
    ``X-Api-Key: …``, ``Cookie: …``), bearer tokens and ``Authorization`` values, GitHub tokens, and the literal
    values of *secrets* (3 characters or more) and of :func:`register_secrets`.
    """
    try:
        text = text if isinstance(text, str) else str(text)
        if "://" in text:
            text = _redact_urls(text)
        text = _BEARER.sub(rf"\g<1>{MASK}", text)
        text = _AUTH_HEADER.sub(rf"\g<1>{MASK}", text)
        if "=" in text or ":" in text:
            text = _redact_pairs(text)
        text = _GITHUB_TOKEN.sub(MASK, text)
        text = _BAD_PORT.sub(rf"\g<1>'{MASK}'", text)
        text = _HOST_WITH_AT.sub(rf"\g<1>{MASK}@", text)
        literals = {value for value in secrets if isinstance(value, str) and len(value) >= MIN_GIVEN_SECRET}
        for value in sorted(literals | _registered, key=len, reverse=True):
            if value in text:
                text = text.replace(value, MASK)
        return text
    except Exception:  # noqa: BLE001
        return MASK


def redact_data(value: Any, secrets: Iterable[str] = ()) -> Any:
    """*value* (dicts, lists, tuples, strings; a report or a record's extras) with :func:`redact_text` applied to
    every string, and every value of a secret-named key masked."""
    secrets = tuple(secrets)
    try:
        if isinstance(value, str):
            return redact_text(value, secrets)
        if isinstance(value, Mapping):
            return {
                key: (
                    MASK
                    if value[key] and is_secret_name(key, strict=True) and isinstance(value[key], str | bytes | bytearray)
                    else redact_data(value[key], secrets)
                )
                for key in value
            }
        if isinstance(value, list | tuple | set | frozenset):
            return type(value)(redact_data(item, secrets) for item in value)
        return value
    except Exception:  # noqa: BLE001
        return MASK


def redact_record(record: dict[str, Any]) -> None:
    """A loguru patcher: mask secrets in the message and in the string values of ``extra``."""
    try:
        record["message"] = redact_text(record["message"])
        extra = record.get("extra")
        if extra:
            for key, item in list(extra.items()):
                extra[key] = redact_data({key: item})[key]
    except Exception:  # noqa: BLE001 - logging must go on
        record["message"] = MASK
