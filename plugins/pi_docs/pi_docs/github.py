"""A small GitHub REST client: conditional requests, rate-limit waits, retries, and a count of every call.

GitHub's rules (docs ``rate-limits-for-the-rest-api``, ``best-practices-for-using-the-rest-api``):
a 304 answer to ``If-None-Match`` costs nothing; an exhausted primary limit answers 403 or 429 with
``x-ratelimit-remaining: 0`` and the reset time in ``x-ratelimit-reset`` (epoch seconds); a
secondary limit answers 403 or 429, often with ``retry-after`` (seconds). Every wait here is
capped by ``max_wait``: a longer one gives up for this run (:class:`RateLimited`) instead of
holding a worker for an hour.

Transport is httpx: every request carries an explicit timeout (``timeout``, ``PI_GITHUB_TIMEOUT``), redirects
are followed (without the token to another host), and raw files are streamed with a size cap
(``max_file_bytes``, default :data:`MAX_FILE_BYTES`): a larger file raises :class:`FileTooLarge` as soon as
its ``Content-Length`` or the bytes read so far pass the cap, so it is never held in memory whole.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from loguru import logger

from pi_docs import metrics as docs_metrics
from pi_docs.text import NotText

SHA_MEDIA_TYPE = "application/vnd.github.sha"
#: waited before retrying a secondary limit that gave no ``retry-after`` (GitHub asks for at least a minute)
SECONDARY_LIMIT_WAIT = 60.0
#: a raw file larger than this (1 MiB, decoded) is not read: documentation pages are far smaller, and the indexer
#: keeps at most PI_MAX_CHUNKS_PER_DOCUMENT chunks (about 200 KB of text by default) of a document anyway
MAX_FILE_BYTES = 1024 * 1024


class GitHubError(RuntimeError):
    """A request failed for good (after retries)."""


class NotFound(GitHubError):
    """404: the repository, branch or commit does not exist (or the token cannot see it)."""


class RateLimited(GitHubError):
    """The rate limit asks for a longer wait than allowed: this run gives up, the next one continues."""


class FileTooLarge(NotText):
    """A raw file is larger than the cap: not indexable, like a binary file (the sync skips it with one WARNING)."""


@dataclass
class Response:
    status: int
    headers: httpx.Headers
    body: Any


class GitHubClient:
    """Calls the REST API (``api_url``) and the raw host (``raw_url``); ``calls`` counts every request sent."""

    def __init__(
        self,
        api_url: str,
        raw_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 1.0,
        max_wait: float = 600.0,
        max_file_bytes: int = MAX_FILE_BYTES,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.raw_url = raw_url.rstrip("/")
        self.timeout = httpx.Timeout(timeout)
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self.max_file_bytes = max_file_bytes
        self.sleep = sleep
        self.calls = 0
        self.http = http or httpx.Client(follow_redirects=True, timeout=self.timeout)
        self.http.headers["User-Agent"] = "pi-framework-docs"
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}

    # ------------------------------------------------------------------ endpoints
    def head_commit(self, owner: str, repo: str, ref: str, etag: str | None = None) -> tuple[str, str | None] | None:
        """``(sha, etag)`` of *ref*'s latest commit, or ``None`` when it answered 304 to *etag*.

        Asks for the ``application/vnd.github.sha`` media type: 40 bytes instead of the commit with its
        files and patches (a JSON answer is understood too).
        """
        headers = {"Accept": SHA_MEDIA_TYPE, **({"If-None-Match": etag} if etag else {})}
        path = f"/repos/{owner}/{repo}/commits/{quote(ref, safe='/')}"
        response = self._get(self.api_url + path, what=f"branch {ref!r} of {owner}/{repo}", headers=headers, raw=True)
        if response.status == 304:
            return None
        text = response.body.decode().strip()
        sha = json.loads(text)["sha"] if text.startswith("{") else text
        return sha, response.headers.get("etag")

    def compare(self, owner: str, repo: str, base: str, head: str) -> dict[str, Any]:
        path = f"/repos/{owner}/{repo}/compare/{base}...{head}"
        return self._get(self.api_url + path, what=f"comparison {base[:12]}...{head[:12]} of {owner}/{repo}").body

    def tree(self, owner: str, repo: str, sha: str, recursive: bool) -> dict[str, Any]:
        url = f"{self.api_url}/repos/{owner}/{repo}/git/trees/{sha}" + ("?recursive=1" if recursive else "")
        return self._get(url, what=f"tree {sha[:12]} of {owner}/{repo}").body

    def raw(self, owner: str, repo: str, sha: str, path: str) -> bytes:
        """The file's bytes, streamed; :class:`FileTooLarge` past ``max_file_bytes`` (nothing more is read)."""
        url = f"{self.raw_url}/{owner}/{repo}/{sha}/{quote(path)}"
        return self._get(url, what=f"{path} at {sha[:12]} of {owner}/{repo}", raw=True, limit=self.max_file_bytes).body

    def close(self) -> None:
        self.http.close()

    # ------------------------------------------------------------------ transport
    def _get(
        self, url: str, *, what: str, headers: dict[str, str] | None = None, raw: bool = False, limit: int | None = None
    ) -> Response:
        """GET with retries; a 200's body is capped at *limit* bytes when given (:class:`FileTooLarge` beyond)."""
        attempt, waited = 0, 0.0
        while True:
            attempt += 1
            self.calls += 1
            try:
                with self.http.stream("GET", url, headers={**self._auth, **(headers or {})}, timeout=self.timeout) as reply:
                    content = _read_capped(reply, limit, what) if limit is not None and reply.status_code == 200 else reply.read()
            except httpx.TimeoutException as exc:
                self._retry_or_raise(attempt, what, f"Timeout ({type(exc).__name__}): {exc}")
                continue
            except httpx.TransportError as exc:  # refused/reset connections, broken chunked bodies, protocol errors
                self._retry_or_raise(attempt, what, f"ConnectionError ({type(exc).__name__}): {exc}")
                continue
            status = reply.status_code
            docs_metrics.github_response(status, reply.headers.get("x-ratelimit-remaining"))
            if status in (200, 304):
                body = None if status == 304 else (content if raw else json.loads(content))
                return Response(status, reply.headers, body)
            if status == 404:
                raise NotFound(f"GitHub: {what} not found (404)")
            if status in (403, 429) and self._is_rate_limit(reply):
                if attempt > self.retries:
                    raise RateLimited(
                        f"GitHub rate limit on {what}: still limited after {attempt} attempts; giving up for this run"
                    )
                waited += self._wait_for_limit(reply, what, waited)
                continue
            if status >= 500:
                self._retry_or_raise(attempt, what, f"HTTP {status}")
                continue
            raise GitHubError(f"GitHub: {what}: HTTP {status}: {_message(reply)}")

    def _retry_or_raise(self, attempt: int, what: str, reason: str) -> None:
        if attempt > self.retries:
            raise GitHubError(f"GitHub: {what}: {reason} (gave up after {attempt} attempts)")
        delay = min(self.backoff * 2 ** (attempt - 1), self.max_wait)
        logger.warning("GitHub: {}: {}; retry {}/{} in {:.2f}s", what, reason, attempt, self.retries, delay)
        self.sleep(delay)

    @staticmethod
    def _is_rate_limit(reply: httpx.Response) -> bool:
        if reply.status_code == 429 or "retry-after" in reply.headers or reply.headers.get("x-ratelimit-remaining") == "0":
            return True
        message = _message(reply).lower()
        return "rate limit" in message or "abuse" in message

    def _wait_for_limit(self, reply: httpx.Response, what: str, waited: float) -> float:
        """Sleep as the limit asks and return the wait; raise :class:`RateLimited` past ``max_wait`` in total."""
        headers = reply.headers
        if "retry-after" in headers:
            wait, kind = _number(headers["retry-after"], SECONDARY_LIMIT_WAIT), "retry-after"
        elif headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
            wait, kind = max(0.0, _number(headers["x-ratelimit-reset"], 0.0) - time.time() + 1), "primary limit reset"
        else:
            wait, kind = SECONDARY_LIMIT_WAIT, "secondary limit"
        if waited + wait > self.max_wait:
            raise RateLimited(
                f"GitHub rate limit on {what} (HTTP {reply.status_code}): {kind} asks to wait {wait:.0f}s, "
                f"beyond PI_GITHUB_MAX_WAIT={self.max_wait:g}s; giving up for this run"
            )
        logger.warning("GitHub rate limit on {} (HTTP {}): {} - waiting {:.1f}s", what, reply.status_code, kind, wait)
        self.sleep(wait)
        return wait


def _number(value: str, default: float) -> float:
    try:
        return float(value)
    except ValueError:
        return default


def _read_capped(reply: httpx.Response, limit: int, what: str) -> bytes:
    """The body, streamed; :class:`FileTooLarge` once ``Content-Length`` or the bytes received pass *limit*."""
    declared = reply.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise FileTooLarge(f"{what}: {int(declared)} bytes, larger than the {limit}-byte cap; not downloaded")
    chunks, size = [], 0
    for chunk in reply.iter_bytes():  # decoded (gzip) bytes: the cap is on what would be held in memory
        size += len(chunk)
        if size > limit:
            raise FileTooLarge(f"{what}: more than the {limit}-byte cap; download stopped")
        chunks.append(chunk)
    return b"".join(chunks)


def _message(reply: httpx.Response) -> str:
    try:
        return str(reply.json().get("message", ""))
    except ValueError:
        return reply.text[:200]
