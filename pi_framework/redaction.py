"""Secrets never printed: passwords in URLs, token-like parameters, bearer tokens, configured secret values.

Every path that shows a URL or an error text to a person or a log goes through here: ``pi settings``,
``pi health`` (and the ``health_check`` task), database and OpenSearch errors, and every log line
(:mod:`pi_framework.log` installs :func:`redact_record` as loguru's patcher and redacts the final text of its
sink, tracebacks included). Nothing here raises: on input it cannot handle it masks more, never less.

URLs are parsed by hand, not with :func:`urllib.parse.urlsplit`, because a password may hold ``/ # ? @ :``
unencoded (SQLAlchemy accepts ``postgresql://pi:s3cr/et#x@db/pi``), and ``urlsplit`` then ends the host part
at the first ``/`` and shows the rest of the password as a path. Here the userinfo is everything up to the
**last** ``@`` after ``scheme://``; an unencoded ``@`` later in the URL (``?email=a@b``) makes more of the URL
masked, never less.
"""

from __future__ import annotations

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
#: ``name=value`` in free text (libpq DSNs, settings errors, repr of options)
_KEY_VALUE = re.compile(r"(?<![\w.\-])([A-Za-z_][\w.\-]*)=('[^']*'|\"[^\"]*\"|[^\s&,;'\"()\[\]{}]*)")
#: ``"name": "value"`` / ``'name': 'value'`` (JSON, dict reprs)
_QUOTED_PAIR = re.compile(r"""(["'])([A-Za-z_][\w.\-]*)\1(\s*:\s*)(["'])((?:\\.|(?!\4)[^\\])*)\4""")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=\-]{4,}")
_AUTH_HEADER = re.compile(
    r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?(?!(?:(?:bearer|basic|token|digest|negotiate)\s+)?\*\*\*)(?:(?:bearer|basic|token|digest|negotiate)\s+)?)[^\s\"',}]+"
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
    """Does a parameter or variable called *name* hold a secret? (``GITHUB_TOKEN``, ``sslpassword``, ``api-key``…)

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
def _key_value(match: re.Match[str]) -> str:
    name, value = match.group(1), match.group(2)
    if not value or name.lower() == "authorization" or not is_secret_name(name, strict=True) or value.strip("'\"") == MASK:
        return match.group(0)
    quote = value[0] if value[0] in "'\"" and len(value) > 1 and value[-1] == value[0] else ""
    return f"{name}={quote}{MASK}{quote}"


def _quoted_pair(match: re.Match[str]) -> str:
    quote, name, colon, value_quote, value = match.groups()
    if not value or value == MASK or not is_secret_name(name, strict=True):
        return match.group(0)
    return f"{quote}{name}{quote}{colon}{value_quote}{MASK}{value_quote}"


def redact_text(text: Any, secrets: Iterable[str] = ()) -> str:
    """*text* (a log line, an error message, a traceback) with every secret in it masked.

    Masks: passwords and secret parameters of every ``scheme://`` URL in it, ``password=…``-style pairs
    (libpq DSNs, reprs), ``"password": "…"`` pairs, bearer tokens and ``Authorization`` values, GitHub
    tokens, and the literal values of *secrets* (3 characters or more) and of :func:`register_secrets`.
    """
    try:
        text = text if isinstance(text, str) else str(text)
        if "://" in text:
            text = _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)
        text = _BEARER.sub(rf"\g<1>{MASK}", text)
        text = _AUTH_HEADER.sub(rf"\g<1>{MASK}", text)
        if "=" in text:
            text = _KEY_VALUE.sub(_key_value, text)
        if ":" in text:
            text = _QUOTED_PAIR.sub(_quoted_pair, text)
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
                    if value[key] and is_secret_name(key, strict=True) and isinstance(value[key], str)
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
