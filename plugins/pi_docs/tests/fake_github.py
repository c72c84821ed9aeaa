"""A fake GitHub on 127.0.0.1 backed by real git repositories (commits made with ``git`` in the test).

It answers, with the response shapes of the real API (see ``shared/reference/github``):
``GET /repos/{o}/{r}/commits/{ref}`` (ETag, ``If-None-Match`` → 304), ``GET /repos/{o}/{r}/compare/{a}...{b}``
(file statuses, at most 300 files), ``GET /repos/{o}/{r}/git/trees/{sha}[?recursive=1]`` (``truncated``
when a recursive listing has more than ``truncate_above`` entries) and the raw host under ``/raw/{o}/{r}/{sha}/{path}``.
``script(...)`` queues canned error replies (rate limits, 5xx) for the next matching requests.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

COMPARE_FILE_LIMIT = 300
_STATUS = {"A": "added", "M": "modified", "D": "removed", "R": "renamed", "C": "copied", "T": "changed"}


class GitRepo:
    """A working git repository for a test: write files, commit, get SHAs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        identity = {
            "GIT_AUTHOR_NAME": "T",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "T",
            "GIT_COMMITTER_EMAIL": "t@example.com",
        }
        env = {**os.environ, **identity, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
        return subprocess.run(["git", "-C", str(self.path), *args], check=True, capture_output=True, env=env).stdout.decode()

    def write(self, files: dict[str, str | bytes]) -> None:
        for name, content in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                target.write_text(content, encoding="utf-8")
            else:
                target.write_bytes(content)

    def commit(self, message: str = "change", files: dict[str, str | bytes] | None = None) -> str:
        self.write(files or {})
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()


@dataclass
class Scripted:
    pattern: str
    status: int
    headers: dict[str, str]
    body: dict
    times: int


@dataclass
class FakeGitHub:
    repos: dict[str, Path] = field(default_factory=dict)
    truncate_above: int | None = None
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    scripted: list[Scripted] = field(default_factory=list)
    url: str = ""

    def add_repo(self, name: str, repo: GitRepo) -> None:
        self.repos[name] = repo.path

    def script(
        self, pattern: str, status: int, headers: dict[str, str] | None = None, body: dict | None = None, times: int = 1
    ) -> None:
        """The next *times* requests whose path matches the regex *pattern* get this reply instead."""
        self.scripted.append(Scripted(pattern, status, headers or {}, body or {"message": "scripted"}, times))

    @property
    def api_url(self) -> str:
        return self.url

    @property
    def raw_url(self) -> str:
        return self.url + "/raw"

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def reset_log(self) -> None:
        self.requests.clear()

    # ------------------------------------------------------------------ request handling
    def handle(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        self.requests.append((path, headers))
        for canned in self.scripted:
            if canned.times > 0 and re.search(canned.pattern, path):
                canned.times -= 1
                return canned.status, canned.headers, json.dumps(canned.body).encode()
        parts = urlsplit(path)
        route = unquote(parts.path)
        if match := re.fullmatch(r"/raw/([^/]+/[^/]+)/([0-9a-f]{40})/(.+)", route):
            return self._raw(*match.groups())
        if match := re.fullmatch(r"/repos/([^/]+/[^/]+)/commits/(.+)", route):
            return self._commit(match.group(1), match.group(2), headers)
        if match := re.fullmatch(r"/repos/([^/]+/[^/]+)/compare/([^.]+)\.\.\.(.+)", route):
            return self._compare(*match.groups())
        if match := re.fullmatch(r"/repos/([^/]+/[^/]+)/git/trees/([^/]+)", route):
            return self._tree(match.group(1), match.group(2), "recursive" in parts.query)
        return _not_found()

    def _git(self, name: str, *args: str) -> bytes | None:
        if name not in self.repos:
            return None
        result = subprocess.run(["git", "-C", str(self.repos[name]), *args], capture_output=True)
        return result.stdout if result.returncode == 0 else None

    def _commit(self, name: str, ref: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        sha = self._git(name, "rev-parse", "--verify", f"{ref}^{{commit}}")
        if sha is None:
            return _not_found()
        sha_text = sha.decode().strip()
        as_sha = headers.get("accept") == "application/vnd.github.sha"  # the "sha" media type: just the SHA
        etag = f'W/"{hashlib.sha256((sha_text + str(as_sha)).encode()).hexdigest()}"'
        if headers.get("if-none-match") == etag:
            return 304, {"etag": etag, **_limits()}, b""
        if as_sha:
            return 200, {"etag": etag, "content-type": "text/plain; charset=utf-8", **_limits()}, sha_text.encode()
        tree = self._git(name, "rev-parse", f"{sha_text}^{{tree}}").decode().strip()
        parents = self._git(name, "rev-list", "--parents", "-n", "1", sha_text).decode().split()[1:]
        body = {
            "url": f"{self.url}/repos/{name}/commits/{sha_text}",
            "sha": sha_text,
            "commit": {"message": "change", "tree": {"sha": tree, "url": f"{self.url}/repos/{name}/git/trees/{tree}"}},
            "parents": [{"sha": parent, "url": f"{self.url}/repos/{name}/commits/{parent}"} for parent in parents],
            "files": [],
        }
        return 200, {"etag": etag, **_limits()}, json.dumps(body).encode()

    def _compare(self, name: str, base: str, head: str) -> tuple[int, dict[str, str], bytes]:
        if (
            self._git(name, "rev-parse", "--verify", f"{base}^{{commit}}") is None
            or self._git(name, "rev-parse", "--verify", f"{head}^{{commit}}") is None
        ):
            return _not_found()
        ahead = int(self._git(name, "rev-list", "--count", f"{base}..{head}"))
        behind = int(self._git(name, "rev-list", "--count", f"{head}..{base}"))
        status = "identical" if not (ahead or behind) else "ahead" if not behind else "behind" if not ahead else "diverged"
        merge_base = self._git(name, "merge-base", base, head).decode().strip()
        fields = self._git(name, "diff", "--name-status", "-z", "-M", "-C", merge_base, head).split(b"\0")
        blobs = {}
        for record in filter(None, self._git(name, "ls-tree", "-r", "-z", head).split(b"\0")):
            meta, path = record.split(b"\t", 1)
            blobs[path.decode()] = meta.split()[2].decode()
        files, index = [], 0
        while index < len(fields) - 1:
            code = fields[index].decode()
            entry: dict[str, object] = {"status": _STATUS.get(code[0], "modified")}
            if code[0] in "RC":
                entry["previous_filename"], entry["filename"] = fields[index + 1].decode(), fields[index + 2].decode()
                index += 3
            else:
                entry["filename"] = fields[index + 1].decode()
                index += 2
            entry.update({"sha": blobs.get(entry["filename"], "0" * 40), "additions": 1, "deletions": 0, "changes": 1,
                          "raw_url": f"{self.raw_url}/{name}/{head}/{entry['filename']}"})  # fmt: skip
            files.append(entry)
        body = {"status": status, "ahead_by": ahead, "behind_by": behind, "total_commits": ahead,
                "merge_base_commit": {"sha": merge_base}, "commits": [], "files": files[:COMPARE_FILE_LIMIT]}  # fmt: skip
        return 200, _limits(), json.dumps(body).encode()

    def _tree(self, name: str, ref: str, recursive: bool) -> tuple[int, dict[str, str], bytes]:
        tree = self._git(name, "rev-parse", "--verify", f"{ref}^{{tree}}")
        if tree is None:
            return _not_found()
        tree_sha = tree.decode().strip()
        listing = self._git(name, "ls-tree", "-z", "--long", *(["-r", "-t"] if recursive else []), tree_sha)
        entries = []
        for record in filter(None, listing.split(b"\0")):
            meta, path = record.split(b"\t", 1)
            mode, kind, sha, size = meta.decode().split()
            entry = {
                "path": path.decode(),
                "mode": mode,
                "type": kind,
                "sha": sha,
                "url": f"{self.url}/repos/{name}/git/{kind}s/{sha}",
            }
            if kind == "blob":
                entry["size"] = int(size)
            entries.append(entry)
        truncated = recursive and self.truncate_above is not None and len(entries) > self.truncate_above
        if truncated:
            entries = entries[: self.truncate_above]
        body = {"sha": tree_sha, "url": f"{self.url}/repos/{name}/git/trees/{tree_sha}", "tree": entries, "truncated": truncated}
        return 200, _limits(), json.dumps(body).encode()

    def _raw(self, name: str, sha: str, path: str) -> tuple[int, dict[str, str], bytes]:
        content = self._git(name, "cat-file", "blob", f"{sha}:{path}")
        if content is None:
            return 404, {"content-type": "text/plain"}, b"404: Not Found"
        return 200, {"content-type": "text/plain; charset=utf-8"}, content


def _limits() -> dict[str, str]:
    return {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4999", "x-ratelimit-used": "1",
            "x-ratelimit-reset": str(int(time.time()) + 3600), "x-ratelimit-resource": "core"}  # fmt: skip


def _not_found() -> tuple[int, dict[str, str], bytes]:
    body = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"}
    return 404, {}, json.dumps(body).encode()


def serve(fake: FakeGitHub) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Start *fake* on a free port of 127.0.0.1 (``fake.url`` is set); stop with ``server.shutdown()``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms per request
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            status, headers, body = fake.handle(self.path, {k.lower(): v for k, v in self.headers.items()})
            self.send_response(status)
            headers = {"content-type": "application/json; charset=utf-8", **headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, thread
