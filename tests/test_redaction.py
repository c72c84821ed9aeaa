"""Secrets are never printed: URL passwords holding ``/ # ? @ :``, token-like parameters, tokens, through every
output path (``pi settings``, ``pi health --json``, log lines and tracebacks, database and OpenSearch errors,
Celery task arguments)."""

from __future__ import annotations

import ast
import json
import logging
import re
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from loguru import logger

from pi_framework import runtime
from pi_framework.cli import build_cli
from pi_framework.contract.sinks import SinkError
from pi_framework.db import Database, DatabaseUnavailable
from pi_framework.log import configure_logging
from pi_framework.redaction import (
    MASK,
    clear_registered_secrets,
    is_secret_name,
    redact_data,
    redact_text,
    redact_url,
    register_secrets,
    settings_secrets,
    url_secrets,
    userinfo_needs_encoding,
)
from pi_framework.settings import load_settings
from pi_framework.settings import redact_url as redact_url_from_settings
from pi_framework.sinks.opensearch.sink import OpenSearchSink

ROOT = Path(__file__).resolve().parents[1]

#: pieces of the secrets used below: none may ever be printed
LEAKS = ("s3cr", "et#x", "qs-s3cret", "p@ss", "hunter22", "ghp_", "tok3n-value")


def assert_no_secret(text: str) -> None:
    for piece in LEAKS:
        assert piece not in text, f"{piece!r} leaked in: {text}"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------- the table of nasty URLs
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # the two reported leaks
        ("postgresql://pi:s3cr/et#x@db:5432/pi", "postgresql://pi:***@db:5432/pi"),
        ("pyamqp://guest:pw@rabbit:5672//?password=qs-s3cret", "pyamqp://guest:***@rabbit:5672//?password=***"),
        # / # ? @ : anywhere in the password: the userinfo ends at the last @
        ("postgresql+psycopg2://pi:a?b#c/d@db/pi", "postgresql+psycopg2://pi:***@db/pi"),
        ("postgresql://pi:p@ss@w:rd@db/pi?sslmode=require", "postgresql://pi:***@db/pi?sslmode=require"),
        ("redis://:s3cr/et#x@cache:6379/0", "redis://:***@cache:6379/0"),
        ("postgresql://pi:hunter22@db/pi", "postgresql://pi:***@db/pi"),
        # IPv6, several hosts, no host at all
        ("postgresql://pi:s3cr/et#x@[::1]:5432/pi", "postgresql://pi:***@[::1]:5432/pi"),
        ("postgresql://pi:s3cr/et#x@[fe80::1%25eth0]/pi", "postgresql://pi:***@[fe80::1%25eth0]/pi"),
        ("postgresql://u:p@h1,h2/db", "postgresql://u:***@h1,h2/db"),
        (
            "postgresql://u:s3cr@et@h1:5432,h2:5433/db?target_session_attrs=any",
            "postgresql://u:***@h1:5432,h2:5433/db?target_session_attrs=any",
        ),
        (
            "postgresql:///pi?host=/var/run/postgresql&password=qs-s3cret",
            "postgresql:///pi?host=/var/run/postgresql&password=***",
        ),
        ("sqlite:////tmp/pi.sqlite", "sqlite:////tmp/pi.sqlite"),
        ("sqla+sqlite:///tmp/broker.sqlite", "sqla+sqlite:///tmp/broker.sqlite"),
        ("//pi:s3cr/et#x@db/pi", "//pi:***@db/pi"),
        ("pi:s3cr/et#x@db/pi", "pi:***@db/pi"),
        # token-like parameters, any case, query and fragment, percent-encoded names
        (
            "https://h/x?api_key=1&APIKEY=2&Token=3&access_token=4&key=5&auth=6&secret=7&pwd=8&passwd=9&tokens=10",
            "https://h/x?api_key=***&APIKEY=***&Token=***&access_token=***&key=***&auth=***&secret=***&pwd=***&passwd=***&tokens=10",
        ),
        (
            "https://h/x?sslpassword=a#b&client_secret=c;d&X-Amz-Signature=e&page=2",
            "https://h/x?sslpassword=***&client_secret=***&X-Amz-Signature=***&page=2",
        ),
        ("https://h/cb#access_token=tok3n-value&state=s", "https://h/cb#access_token=***&state=s"),
        ("https://h/x?pass%77ord=qs-s3cret&password=", "https://h/x?pass%77ord=***&password="),
        ("https://h/x?password=qs-s3cret#frag?token=z", "https://h/x?password=***"),
        # user names are kept, unless they are tokens
        ("pyamqp://guest@rabbit:5672//", "pyamqp://guest@rabbit:5672//"),
        ("https://ghp_0123456789abcdefghijABCDEFGHIJ@github.com/o/r.git", "https://***@github.com/o/r.git"),
        ("https://x-access-token:ghp_0123456789abcdefghij@github.com/o/r", "https://x-access-token:***@github.com/o/r"),
        # nothing to hide
        ("http://[::1]:9200", "http://[::1]:9200"),
        ("https://api.github.com", "https://api.github.com"),
        ("http://u:@h/", "http://u:@h/"),
        ("owner/repo@main:docs", "owner/repo@main:docs"),
        ("plane_pi_queue", "plane_pi_queue"),
        # ambiguous (an unencoded @ after the host): more is masked, never less
        ("https://pi:p@ss/x@host/db", "https://pi:***@host/db"),
        (None, None),
        ("", ""),
    ],
)
def test_redact_url_table(url, expected):
    assert redact_url(url) == expected
    assert redact_url_from_settings(url) == expected  # still importable where callers found it


@pytest.mark.parametrize(
    "garbage",
    [
        5,
        3.5,
        b"http://u:s3cr/et@h",
        object(),
        "://",
        "@",
        ":@",
        "a:b@",
        "http://",
        "http://@",
        "http://[::1",
        "http://u:p@[::1",
        "%zz%",
        "\x00\xff\ud800",
        "?password",
        "?=&=&",
        "http://h/?" + "&".join("password=x" for _ in range(2000)),
        "x" * 100_000 + "@",
    ],
)
def test_garbage_never_raises(garbage):
    shown = redact_url(garbage)
    assert isinstance(shown, str)
    assert "s3cr" not in shown and "password=x" not in shown
    assert isinstance(redact_text(garbage), str)
    assert isinstance(url_secrets(garbage), set) and isinstance(userinfo_needs_encoding(garbage), bool)
    redact_data({"x": [garbage, (garbage,)]})


def test_secret_names():
    for name in ("password", "PASSWORD", "sslpassword", "api-key", "API_KEY", "apikey", "token", "access_token", "GITHUB_TOKEN"):
        assert is_secret_name(name), name
    for name in ("client_secret", "AWS_SECRET_ACCESS_KEY", "db_password", "pass%77ord", "key", "auth"):
        assert is_secret_name(name), name
    for name in ("tokens", "PI_CHUNK_TOKENS", "user", "host", "sslmode", "page", "OPENSEARCH_INDEX_PREFIX", "", None):
        assert not is_secret_name(name), name
    assert not is_secret_name("key", strict=True) and is_secret_name("password", strict=True)


def test_url_secrets_are_raw_and_decoded():
    assert url_secrets("postgresql://pi:s3cr%2Fet@db/pi?sslpassword=q%40q&x=1") == {"s3cr%2Fet", "s3cr/et", "q%40q", "q@q"}
    assert url_secrets("postgresql://pi:s3cr/et#x@db/pi") == {"s3cr/et#x"}
    assert url_secrets("http://h") == set() and url_secrets(None) == set()
    assert userinfo_needs_encoding("http://u:s3cr/et@h") and not userinfo_needs_encoding("http://u:s3cr%2Fet@h/x?a=%40")


# ---------------------------------------------------------------------- free text
def test_free_text_is_redacted():
    text = (
        "could not connect to 'postgresql://pi:s3cr/et#x@db/pi' (dsn: host=db password=hunter22 dbname=pi), "
        'options {"password": "hunter22", \'token\': \'tok3n-value\', "tokens": 256} '
        "headers Authorization: Bearer tok3n-value, GITHUB_TOKEN='ghp_0123456789abcdefghijABCD' "
        "ValueError: Port could not be cast to integer value as 's3cr' / "
        'could not translate host name "p@ss@127.0.0.1" to address'
    )
    shown = redact_text(text)
    assert_no_secret(shown)
    assert "'postgresql://pi:***@db/pi'" in shown and "password=***" in shown and '"tokens": 256' in shown
    assert "Bearer ***" in shown and 'host name "***@127.0.0.1"' in shown


@pytest.mark.parametrize(
    "text",
    [
        "'password': '" + "\\\\" * 5000 + "x",  # backslashes and no closing quote
        "a=" * 50_000,
        "x://" + "@" * 50_000,
        "?" * 100_000 + "://",
        "'a': '" * 30_000,
        ("host name " + "a" * 5000 + " ") * 20,
        "http://" + "u:p@" * 20_000,
        "a://b:c " * 10_000 + "', x@y",
        "'a://b:1' " * 10_000 + "x@y",
        "x://u:" + "@ " * 50_000,
        "password: '" * 30_000,
        '\\"password\\": \\"' * 20_000,
        "password: " + "x'," * 50_000,
        "a:" * 50_000,
    ],
)
def test_pathological_text_is_redacted_in_linear_time(text):
    import time

    started = time.perf_counter()
    redact_text(text)
    redact_url(text)
    assert time.perf_counter() - started < 2


def test_json_lines_stay_json():
    line = json.dumps(
        {"text": "at postgresql://pi:s3cr/et#x@db/pi", "url": "pyamqp://g:pw@r//?password=qs-s3cret", "email": "a@b"}
    )
    shown = redact_text(line)
    assert_no_secret(shown)
    assert json.loads(shown) == {"text": "at postgresql://pi:***@db/pi", "url": "pyamqp://g:***@r//?password=***", "email": "a@b"}


def test_known_secret_values_are_scrubbed():
    settings = load_settings(
        PI_DATABASE_URL="postgresql://pi:s3cr/et#x@db/pi",
        OPENSEARCH_URL="https://admin:tok3n-value@search:9200",
        CELERY_BROKER_URL="pyamqp://u:hunter22@git/x",
    )
    secrets = settings_secrets(settings)
    assert {"s3cr/et#x", "tok3n-value", "hunter22"} <= secrets
    assert_no_secret(redact_text("token tok3n-value and s3cr/et#x, hunter22", secrets))
    clear_registered_secrets()
    try:
        register_secrets("tok3n-value", "short", None)
        assert redact_text("x tok3n-value short") == "x *** short"  # under 6 characters: not scrubbed everywhere
    finally:
        clear_registered_secrets()


# ---------------------------------------------------------------------- free text: passwords with quotes, spaces, @
@pytest.mark.parametrize(
    "password",
    ["it's-a-secret", 'it"s-a-secret', "it s a secret", "hunter 22 'x' \"y\" w:rd/et#x p@ss", "@hunter22", "8080 hunter22"],
)
def test_url_passwords_with_quotes_and_spaces_in_free_text(password):
    url = f"postgresql+psycopg2://pi:{password}@db/pi"
    quote = repr(url)[0]  # the repr's quote is the one the password does not hold
    for text, expected in [
        (url, "postgresql+psycopg2://pi:***@db/pi"),
        (f"connecting to {url} failed", "connecting to postgresql+psycopg2://pi:***@db/pi failed"),
        (f"could not parse {url!r} (x)", f"could not parse {quote}postgresql+psycopg2://pi:***@db/pi{quote} (x)"),
        (f"<{url}>, then admin@example.com", "<postgresql+psycopg2://pi:***@db/pi>, then admin@example.com"),
        (
            f"copy {url} to redis://:s3cr@cache/0 for a@b",
            "copy postgresql+psycopg2://pi:***@db/pi to redis://:***@cache/0 for a@b",
        ),
    ]:
        assert redact_text(text) == expected, text
    line = json.dumps({"text": f"at {url} failed", "email": "a@b", "url": "http://search:9200"})
    assert json.loads(redact_text(line)) == {
        "text": "at postgresql+psycopg2://pi:***@db/pi failed",
        "email": "a@b",
        "url": "http://search:9200",
    }
    assert redact_url(url) == "postgresql+psycopg2://pi:***@db/pi"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password = hunter22", "password = ***"),
        ("password: hunter22", "password: ***"),
        ("Password: hunter 22 and more\nuser: pi", "Password: ***\nuser: pi"),  # to the end of the line
        ("[db]\npasswd = hunter22\nhost = db", "[db]\npasswd = ***\nhost = db"),
        ("PI_DB_PASSWORD=hunter22 PI_DB_HOST=db", "PI_DB_PASSWORD=*** PI_DB_HOST=db"),
        ("--password=hunter22 --user=pi", "--password=*** --user=pi"),
        ("f(password=hunter22, user='pi')", "f(password=***, user='pi')"),
        ("pwd=it's-hunter22 next", "pwd=*** next"),
        ("host=db password='hunter 22 \\' x' dbname=pi", "host=db password='***' dbname=pi"),  # libpq quoting
        ("secret: hunter22", "secret: ***"),
        ("token = hunter22", "token = ***"),
        ("API_KEY: hunter22", "API_KEY: ***"),
        ("apikey=hunter22&page=2", "apikey=***&page=2"),
        ("aws access_key: hunter22", "aws access_key: ***"),
        ("private_key = hunter22", "private_key = ***"),
        ("client_secret: 'hunter 22'", "client_secret: '***'"),
        # JSON, compact JSON, numbers, escaped quotes
        ('{"password": "hunter 22", "user": "pi"}', '{"password": "***", "user": "pi"}'),
        ('{"password":"hun\\"ter 22","user":"pi"}', '{"password":"***","user":"pi"}'),
        ('{"token": 1234567, "tokens": 256, "secret": null}', '{"token": ***, "tokens": 256, "secret": null}'),
        # Python reprs: bytes, either quote, the other quote and escaped quotes inside
        ("{'password': b'hunter22', 'user': 'pi'}", "{'password': b'***', 'user': 'pi'}"),
        ("{'password': b\"hunter'22\"}", "{'password': b\"***\"}"),
        ("{'password': \"it's hunter22\", 'user': 'pi'}", "{'password': \"***\", 'user': 'pi'}"),
        ("{'password': 'it\\'s \"hunter22\"', 'user': 'pi'}", "{'password': '***', 'user': 'pi'}"),
        ("{'passwd': 'a'b hunter22'}", "{'passwd': '***'}"),  # hand-quoted: the quote that ends the string wins
        ("Options(password='hunter22', port=5432)", "Options(password='***', port=5432)"),
    ],
)
def test_key_value_forms(text, expected):
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("X-Api-Key: hunter22", "X-Api-Key: ***"),
        ("x-api-key:hunter22", "x-api-key:***"),
        ("X-Auth-Token: hunter 22", "X-Auth-Token: ***"),
        ("Api-Key: hunter22", "Api-Key: ***"),
        ("Private-Token: hunter22", "Private-Token: ***"),
        ("Cookie: session=hunter22; theme=dark", "Cookie: ***"),
        ("Set-Cookie: session=hunter22; Path=/; HttpOnly", "Set-Cookie: ***"),
        ("Authorization: Bearer tok3n-value", "Authorization: Bearer ***"),
        ("Proxy-Authorization: Basic dG9rM24tdmFsdWU=", "Proxy-Authorization: Basic ***"),
        ("Authorization: ,hunter22", "Authorization: ***"),
        (
            "GET / HTTP/1.1\r\nHost: search:9200\r\nX-Api-Key: hunter22\r\nAccept: */*\r\n",
            "GET / HTTP/1.1\r\nHost: search:9200\r\nX-Api-Key: ***\r\nAccept: */*\r\n",
        ),
        ("headers={'X-Api-Key': 'hunter22', 'Accept': '*/*'}", "headers={'X-Api-Key': '***', 'Accept': '*/*'}"),
    ],
)
def test_header_forms(text, expected):
    assert redact_text(text) == expected


def test_json_log_lines_with_pairs_stay_json():
    record = {
        "text": 'INFO | password: hunter22\nbody {"api_key": "hunter22", "n": 1} X-Auth-Token: hunter22\ntoken = hunter22',
        "extra": {"dsn": "host=db password=hunter22"},
    }
    shown = redact_text(json.dumps(record))
    assert "hunter22" not in shown
    assert json.loads(shown) == {
        "text": 'INFO | password: ***\nbody {"api_key": "***", "n": 1} X-Auth-Token: ***\ntoken = ***',
        "extra": {"dsn": "host=db password=***"},
    }


@pytest.mark.parametrize(
    "text",
    [
        "connected to http://search:9200 in 3 ms",
        "GET http://localhost:8000/api/x?page=2 200",
        '{"url": "http://search:9200", "email": "a@b.example"}',
        '{"url":"http://search:9200/_bulk","email":"a@b.example"}',
        "sync http://plane:8000/api/workspaces/x for user bob@corp.example",
        "see https://example.com/docs, mail bob@example.com",
        "http://[::1]:9200 and admin@x, http://u:@h/ ok",
        "Key: value; auth: basic; pass: true; tokens: 256; the token is valid; a password is needed",
        'FATAL:  password authentication failed for user "pi"',
        "PI_CHUNK_TOKENS=512 max_tokens=3 keyword=x ratio 3:4 x == y",
        "2024-01-01 12:00:00.000 | INFO    | 123 | pi_framework.tokens | refreshed",
        '{"password": "", "token": null, "secret": true}',
    ],
)
def test_ordinary_text_is_left_alone(text):
    assert redact_text(text) == text


def test_secret_values_in_data_are_masked_whatever_their_type():
    data = {"password": b"hunter22", "api_key": bytearray(b"hunter22"), "token": "hunter22", "tokens": 256, "x": [b"ok"]}
    assert redact_data(data) == {"password": "***", "api_key": "***", "token": "***", "tokens": 256, "x": [b"ok"]}


# ---------------------------------------------------------------------- property: any printable password
#: passwords of any printable characters, ASCII or not
PASSWORDS = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1) | st.text(
    alphabet=st.characters(min_codepoint=32, exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")),
    min_size=1,
)
PROPERTY = settings(max_examples=300, deadline=None, database=None)
SENTINEL = "\x00"  # stands for the password while checking a template: never in a password


def assert_password_hidden(password: str, template: Callable[[str], str]) -> str:
    # a password that is part of the fixed text ("a", "db", "://") would be found there: not a leak
    assume(password not in template(SENTINEL))
    shown = redact_text(template(password))
    # "***" next to a shown "*" would look like the password "**": only what is not the mask counts
    assert password not in shown.replace(MASK, SENTINEL), shown
    return shown


def assert_json_password_hidden(password: str, template: Callable[[str], str]) -> None:
    shown = assert_password_hidden(password, template)
    for value in json.loads(shown).values():  # the line stays JSON, and its decoded values hide the password too
        assert not isinstance(value, str) or password not in value.replace(MASK, SENTINEL), shown


def reads_as_host_port_and_path(password: str) -> bool:
    """``pi:8000/x y@db`` reads as ``pi:8000/x`` (host, port and path) and a word: in free text it cannot be told
    from ``http://plane:8000/x for bob@corp`` (the one ambiguity left unmasked, see redaction._url_with_password)."""
    return re.match(r"\d{1,5}[/?#]\S*\s", password) is not None


SCHEMES = st.sampled_from(["postgresql+psycopg2", "postgresql", "redis", "pyamqp", "https", "mongodb+srv"])
URL_TEXTS: list[Callable[[str], str]] = [
    lambda url: url,
    lambda url: f"connecting to {url} now",
    lambda url: f"could not parse {url!r} (x)",
    lambda url: f"<{url}>, contact admin@example.com",
    lambda url: f"copy {url} to redis://cache:6379/0 for a@b.example",
    lambda url: f"first line\nurl={url}\nthird line, user@example.com",
    lambda url: f"ValueError: bad {url}",
]


@PROPERTY
@given(password=PASSWORDS, scheme=SCHEMES, text=st.sampled_from(URL_TEXTS))
def test_property_url_passwords_never_shown(password, scheme, text):
    assume(not reads_as_host_port_and_path(password))
    assert_password_hidden(password, lambda pw: text(f"{scheme}://pi:{pw}@db.example:5432/pi?sslmode=require"))
    assert redact_url(f"{scheme}://pi:{password}@db.example/pi") == f"{scheme}://pi:***@db.example/pi"


@PROPERTY
@given(password=PASSWORDS, scheme=SCHEMES)
def test_property_url_passwords_never_shown_in_json_lines(password, scheme):
    assume(not reads_as_host_port_and_path(password))

    def line(pw: str) -> str:
        return json.dumps({"text": f"at {scheme}://pi:{pw}@db.example/pi failed", "email": "a@b.example", "n": 1})

    assert_json_password_hidden(password, line)


SECRET_NAMES = st.sampled_from(
    [
        "password",
        "PASSWORD",
        "passwd",
        "pwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "access_key",
        "private_key",
        "Api-Key",
        "db_password",
    ]
)


def _libpq_quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


PAIR_TEXTS: list[Callable[[str, str], str]] = [
    lambda name, pw: f"{name} = {pw}",
    lambda name, pw: f"{name}: {pw}",
    lambda name, pw: f"{name}: {pw}\nuser: pi",
    lambda name, pw: f"{name}={pw!r} user='pi'",
    lambda name, pw: f"host=db {name}={_libpq_quoted(pw)} dbname=pi",
    lambda name, pw: f"{name}: {json.dumps(pw)}",
    lambda name, pw: json.dumps({"user": "pi", name: pw, "n": 1}),
    lambda name, pw: json.dumps({"user": "pi", name: pw, "n": 1}, separators=(",", ":")),
    lambda name, pw: repr({"user": "pi", name: pw, "n": 1}),
    lambda name, pw: repr({"user": "pi", name: pw.encode(), "n": 1}),
]


@PROPERTY
@given(password=PASSWORDS, name=SECRET_NAMES, text=st.sampled_from(PAIR_TEXTS))
def test_property_pair_values_never_shown(password, name, text):
    # an unquoted value's leading or trailing white space cannot be told from the separator's
    assume(password.strip())
    assert_password_hidden(password, lambda pw: text(name, pw))


@PROPERTY
@given(password=PASSWORDS, name=SECRET_NAMES)
def test_property_pair_values_never_shown_in_json_lines(password, name):
    assume(password.strip())
    assert_json_password_hidden(password, lambda pw: json.dumps({"text": f"INFO | {name}: {pw}\n", "n": 1}))
    assert_json_password_hidden(password, lambda pw: json.dumps({"text": f"body {json.dumps({name: pw})}", "n": 1}))


HEADERS = st.sampled_from(["X-Api-Key", "X-Auth-Token", "Api-Key", "Cookie", "Set-Cookie", "Private-Token", "Authorization"])


@PROPERTY
@given(password=PASSWORDS, header=HEADERS)
def test_property_header_values_never_shown(password, header):
    assume(password.strip())
    assert_password_hidden(password, lambda pw: f"GET / HTTP/1.1\r\nHost: search\r\n{header}: {pw}\r\nAccept: */*\r\n")
    assert_password_hidden(password, lambda pw: f"{header}: {pw}")
    assert_password_hidden(password, lambda pw: repr({"Accept": "*/*", header: pw}))


# ---------------------------------------------------------------------- pi settings
NASTY = {
    "PI_DATABASE_URL": "postgresql://pi:s3cr/et#x@db/pi?sslpassword=qs-s3cret",
    "PLANE_DATABASE_URL": "postgresql+psycopg2://plane:p@ss@h1,h2/plane",
    "CELERY_BROKER_URL": "pyamqp://guest:hunter22@rabbit:5672//?password=qs-s3cret",
    "CELERY_RESULT_BACKEND": "db+postgresql://pi:s3cr/et#x@[::1]/results",
    "OPENSEARCH_URL": "https://admin:s3cr%2Fet%23x@search:9200/?api_key=qs-s3cret",
    "GITHUB_TOKEN": "ghp_tok3n-value",
    "PI_DOCS_REPOS": "owner/repo,https://ghp_0123456789abcdefghijABCDEF@github.example/x",
}


def test_pi_settings_masks_every_secret(pi_env):
    pi_env(**NASTY)
    result = CliRunner().invoke(build_cli(), ["settings"])
    assert result.exit_code == 0, result.output
    assert_no_secret(result.output)
    lines = set(result.output.splitlines())
    assert "PI_DATABASE_URL=postgresql://pi:***@db/pi?sslpassword=***" in lines
    assert "PLANE_DATABASE_URL=postgresql+psycopg2://plane:***@h1,h2/plane" in lines
    assert "CELERY_BROKER_URL=pyamqp://guest:***@rabbit:5672//?password=***" in lines
    assert "CELERY_RESULT_BACKEND=db+postgresql://pi:***@[::1]/results" in lines
    assert "OPENSEARCH_URL=https://admin:***@search:9200/?api_key=***" in lines
    assert "GITHUB_TOKEN=***" in lines
    assert "PI_DOCS_REPOS=['owner/repo', 'https://***@github.example/x']" in lines


def test_pi_settings_markdown_shows_no_secret(pi_env):
    pi_env(**NASTY)
    result = CliRunner().invoke(build_cli(), ["settings", "--markdown"])
    assert result.exit_code == 0 and "| `PI_DATABASE_URL` |" in result.output
    assert_no_secret(result.output)


def test_settings_error_masks_the_value(monkeypatch):
    monkeypatch.setenv("PI_DB_POOL_SIZE", "postgresql://pi:s3cr/et#x@db/pi")
    with pytest.raises(Exception) as error:
        load_settings()
    assert_no_secret(str(error.value))
    assert "PI_DB_POOL_SIZE='postgresql://pi:***@db/pi' is invalid" in str(error.value)


# ---------------------------------------------------------------------- pi health --json, database errors
@pytest.mark.parametrize(
    "password",
    ["s3cr/et#x", "s3cr?et#x", "s3cr:et/x", "p@ss@hunter22", "p@ss?hunter22"],
)
def test_pi_health_json_and_database_errors(pi_env, password):
    port = closed_port()
    pi_env(
        PI_EMBEDDER="hashing",
        PI_DATABASE_URL=f"postgresql://pi:{password}@127.0.0.1:{port}/pi?sslpassword=qs-s3cret",
        CELERY_BROKER_URL=f"pyamqp://guest:{password}@127.0.0.1:{port}//?password=qs-s3cret",
        PI_DB_BREAKER_THRESHOLD=100,
    )

    result = CliRunner().invoke(build_cli(), ["health", "--json"])

    report = json.loads(result.output[result.output.index("{") :])
    assert result.exit_code == 1 and not report["ok"]
    assert_no_secret(result.output)
    database = report["checks"]["database"]
    assert not database["ok"] and database["url"] == f"postgresql://pi:***@127.0.0.1:{port}/pi?sslpassword=***"
    assert not report["checks"]["broker"]["ok"]

    # the exception itself, raised to a task, and as a worker logs it (the settings' secrets registered)
    settings = runtime.get_registry().settings
    with pytest.raises(Exception) as error:  # noqa: PT011 - DatabaseUnavailable, or SQLAlchemy's error for a bad DSN
        Database(settings).ping()
    if "@" not in password:  # SQLAlchemy ends the password at its first @ and hands libpq the rest as host or option
        assert isinstance(error.value, DatabaseUnavailable)
        assert_no_secret(str(error.value))
    assert_no_secret(redact_text(str(error.value), settings_secrets(settings)))


# ---------------------------------------------------------------------- log lines
@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Tests below call configure_logging in their body (its sink keeps the sys.stderr of that moment: capsys')."""
    yield
    clear_registered_secrets()
    logger.remove()
    logger.add(sys.stderr)
    logging.basicConfig(handlers=[], force=True)


def test_log_lines_and_tracebacks_are_redacted(pi_env, restore_logging, capsys):
    # as a worker does, with secrets in the settings
    configure_logging(pi_env(GITHUB_TOKEN="tok3n-value", PI_DATABASE_URL="postgresql://pi:hunter22@127.0.0.1:1/pi"))
    runtime.get_registry()  # a worker loads its plugins at start: pi_docs' GITHUB_TOKEN is a secret from then on
    captured: list[str] = []
    # another sink (a plugin's, a test's) gets message and extras masked by the patcher (tracebacks: only stderr's)
    handler = logger.add(lambda message: captured.append(f"{message.record['message']} {message.record['extra']}"))
    try:
        logger.info("connecting to postgresql://pi:s3cr/et#x@db/pi and {}", "pyamqp://g:pw@r//?password=qs-s3cret")
        logger.bind(url="https://admin:s3cr@search:9200", token="tok3n-value").warning("sink down")
        logger.info("sending Authorization: Bearer tok3n-value with GITHUB_TOKEN set")
        logger.info("GitHub answered 401 for tok3n-value")  # the configured token, by value
        logging.getLogger("celery").error("broker at pyamqp://guest:p@ss@rabbit// refused")  # standard logging
        try:
            raise ValueError("could not parse 'postgresql://pi:s3cr/et#x@db/pi' (password=hunter22)")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.remove(handler)
    err = capsys.readouterr().err
    for text in (err, "\n".join(captured)):
        assert_no_secret(text)
    assert "postgresql://pi:***@db/pi" in err and "pyamqp://g:***@r//?password=***" in err
    assert "Traceback" in err and "ValueError: could not parse 'postgresql://pi:***@db/pi' (password=***)" in err
    assert "pyamqp://guest:***@rabbit//" in err and "Bearer ***" in err


def test_json_log_lines_are_redacted_and_stay_json(pi_env, restore_logging, capsys):
    configure_logging(pi_env(PI_LOG_JSON=1))
    logger.bind(dsn="host=db password=hunter22").error("at postgresql://pi:s3cr/et#x@db/pi")
    err = capsys.readouterr().err
    assert_no_secret(err)
    record = json.loads(err.strip().splitlines()[-1])
    assert record["record"]["message"] == "at postgresql://pi:***@db/pi"
    assert record["record"]["extra"]["dsn"] == "host=db password=***"


def test_a_failing_stream_never_makes_loguru_print_the_raw_record(pi_env, restore_logging, capsys):
    """loguru reports a sink that raises by printing the record, exception and all: the sink must not raise."""
    import io

    broken = io.StringIO()
    broken.close()
    sys.stderr = broken
    try:
        configure_logging(pi_env())
    finally:
        sys.stderr = sys.__stderr__
    try:
        raise ValueError("postgresql://pi:s3cr/et#x@db/pi")
    except ValueError:
        logger.exception("failed")
    captured = capsys.readouterr()
    assert_no_secret(captured.err + captured.out)


# ---------------------------------------------------------------------- OpenSearch errors
class _Reflecting(BaseHTTPRequestHandler):
    """Answers every request with a 400 whose reason quotes the Authorization header it got (decoded)."""

    def do_GET(self) -> None:  # noqa: N802
        import base64

        self.rfile.read(int(self.headers.get("Content-Length") or 0))  # a POST's body (a count, a search)
        auth = base64.b64decode(self.headers.get("Authorization", "Basic ").split()[1] or b"").decode()
        body = json.dumps({"error": {"type": "bad_request", "reason": f"user {auth} at {self.path}"}, "status": 400})
        self.send_response(400)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    do_HEAD = do_POST = do_GET

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def reflecting_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Reflecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port
    server.shutdown()


def test_opensearch_errors_never_show_the_password(reflecting_server):
    port = closed_port()
    sink = OpenSearchSink(f"http://admin:s3cr%2Fet%23x@127.0.0.1:{port}", retries=0, backoff=0, timeout=2)
    assert sink.safe_url == f"http://admin:***@127.0.0.1:{port}"
    with pytest.raises(SinkError) as unreachable:
        sink.count()
    assert f"http://admin:***@127.0.0.1:{port}" in str(unreachable.value)

    sink = OpenSearchSink(f"http://admin:s3cr%2Fet%23x@127.0.0.1:{reflecting_server}", retries=0, backoff=0, timeout=5)
    with pytest.raises(SinkError) as rejected:
        sink.count()
    assert "user admin:*** at" in str(rejected.value)  # the server quoted the decoded password back

    for password in ("s3cr/et#x", "s3cr?et", "p@ss@hunter22"):
        with pytest.raises(SinkError) as refused:
            OpenSearchSink(f"http://admin:{password}@127.0.0.1:{port}")
        assert "percent-encode" in str(refused.value)
        assert_no_secret(str(refused.value) + repr(refused.value))
    for error in (unreachable, rejected):
        assert_no_secret(str(error.value))


def test_opensearch_url_in_pi_health(pi_env):
    pi_env(PI_EMBEDDER="hashing", OPENSEARCH_URL="http://admin:s3cr/et#x@127.0.0.1:1/?api_key=qs-s3cret")
    result = CliRunner().invoke(build_cli(), ["health", "--json"])
    assert_no_secret(result.output)
    report = json.loads(result.output[result.output.index("{") :])
    assert "percent-encode" in json.dumps(report["checks"]["sinks"])


# ---------------------------------------------------------------------- Celery task arguments
def test_beat_entries_carry_no_url_or_secret(pi_env):
    from pi_framework.celery_app import _beat_schedule

    settings = pi_env(PI_EMBEDDER="hashing", **{k: v for k, v in NASTY.items() if k != "OPENSEARCH_URL"})
    schedule = _beat_schedule(runtime.get_registry(settings))
    assert schedule
    shown = json.dumps({name: [entry["args"], entry["kwargs"]] for name, entry in schedule.items()}, default=str)
    assert "://" not in shown
    assert_no_secret(shown)


_SENDERS = {"send_task", "apply_async", "delay", "signature", "s", "si"}
_FORBIDDEN = ("url", "token", "password", "secret", "settings", "dsn", "auth")


def _sent_argument_names(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
            if called in _SENDERS:
                for argument in [*node.args, *(keyword.value for keyword in node.keywords)]:
                    for inner in ast.walk(argument):
                        if isinstance(inner, ast.Name | ast.Attribute):
                            found.append((node.lineno, inner.id if isinstance(inner, ast.Name) else inner.attr))
                found.extend((node.lineno, keyword.arg or "**") for keyword in node.keywords)
    return found


def test_no_task_is_sent_with_a_url_or_secret_in_its_arguments():
    sources = [*(ROOT / "pi_framework").rglob("*.py"), *ROOT.glob("plugins/pi_*/pi_*/**/*.py")]
    sent = [(path, line, name) for path in sources for line, name in _sent_argument_names(path)]
    assert "workspace_id" in {name for _path, _line, name in sent}  # the scan does see the framework's own sends
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path, line, name in sent
        if any(word in name.lower() for word in _FORBIDDEN)
    ]
    assert offenders == []


# ---------------------------------------------------------------------- plugin failures (pi plugins, pi health)
class _LeakyPlugin:
    from pi_framework import hookimpl

    @hookimpl
    def register_health_checks(self, register) -> None:  # noqa: ANN001
        raise ConnectionError("cannot reach postgresql://pi:s3cr/et#x@db/pi?sslpassword=qs-s3cret")


def test_plugin_failure_reasons_are_redacted(pi_env, register_plugin):
    pi_env(PI_EMBEDDER="hashing")
    registry = register_plugin(_LeakyPlugin(), "leaky")
    assert "leaky" in registry.failures
    result = CliRunner().invoke(build_cli(), ["plugins", "--json"])
    assert_no_secret(result.output)
    assert "postgresql://pi:***@db/pi?sslpassword=***" in json.loads(result.output)["failed"]["leaky"]
