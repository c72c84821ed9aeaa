"""Where a repository's files come from: the GitHub API, or a local git repository (``file://``).

Both answer the same four questions the sync asks, so the sync algorithm is written once.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from loguru import logger

from pi_docs.github import GitHubClient, NotFound
from pi_docs.repos import RepoSpec

#: the compare API lists at most this many files; a reply this long may be cut short
COMPARE_FILE_LIMIT = 300


@dataclass(frozen=True)
class FileChange:
    """One entry of a comparison: ``status`` as GitHub spells it; ``previous`` for renames and copies."""

    status: str
    path: str
    previous: str | None = None


@dataclass(frozen=True)
class Head:
    sha: str
    etag: str | None = None


class Backend(Protocol):
    spec: RepoSpec

    @property
    def calls(self) -> int:
        """API calls made so far."""

    def head(self, etag: str | None) -> Head | None:
        """The branch's latest commit, or ``None`` when unchanged since *etag* (a free 304)."""

    def files(self, sha: str) -> Iterator[tuple[str, str]]:
        """``(path, blob sha)`` of every file of the commit *sha*."""

    def changes(self, base: str, head: str) -> list[FileChange] | None:
        """Files changed from *base* to *head*, or ``None`` when that list may be incomplete."""

    def read(self, sha: str, path: str) -> bytes:
        """Content of *path* at commit *sha*."""

    def url(self, path: str) -> str:
        """Where a person reads *path* (on the branch, not a commit: the URL is part of the content hash)."""


class GitHubBackend:
    """A repository on GitHub (or GitHub Enterprise) through :class:`GitHubClient`."""

    def __init__(self, spec: RepoSpec, client: GitHubClient, html_url: str) -> None:
        self.spec = spec
        self.client = client
        self.html_url = html_url
        self.owner, self.repo = spec.owner_repo

    @property
    def calls(self) -> int:
        return self.client.calls

    def head(self, etag: str | None) -> Head | None:
        try:
            found = self.client.head_commit(self.owner, self.repo, self.spec.branch, etag)
        except NotFound:
            raise NotFound(
                f"docs repository {self.spec.name}: repository or branch {self.spec.branch!r} not found (404)"
            ) from None
        return None if found is None else Head(*found)

    def files(self, sha: str) -> Iterator[tuple[str, str]]:
        yield from self._walk(sha, "", recursive=True)

    def _walk(self, sha: str, base: str, recursive: bool) -> Iterator[tuple[str, str]]:
        """List a tree; a truncated recursive listing is redone level by level, sub-trees recursively again."""
        tree = self.client.tree(self.owner, self.repo, sha, recursive=recursive)
        if recursive and tree.get("truncated"):
            logger.info("docs {}: tree {} is truncated; listing it sub-tree by sub-tree", self.spec, base or "/")
            yield from self._walk(sha, base, recursive=False)
            return
        for entry in tree["tree"]:
            path = f"{base}{entry['path']}"
            if entry["type"] == "blob":
                yield path, entry["sha"]
            elif entry["type"] == "tree" and not recursive and self._may_hold_docs(path):
                yield from self._walk(entry["sha"], path + "/", recursive=True)

    def _may_hold_docs(self, directory: str) -> bool:
        prefix = self.spec.prefix
        return not prefix or prefix.startswith(directory + "/") or prefix == directory or directory.startswith(prefix + "/")

    def changes(self, base: str, head: str) -> list[FileChange] | None:
        comparison = self.client.compare(self.owner, self.repo, base, head)
        if "files" not in comparison:
            logger.info("docs {}: comparison without a file list; diffing trees", self.spec)
            return None
        files = comparison["files"]
        if comparison.get("status") in ("diverged", "behind"):
            logger.info("docs {}: history was rewritten ({} is {}); diffing trees", self.spec, head[:12], comparison["status"])
            return None
        if len(files) >= COMPARE_FILE_LIMIT:
            logger.info("docs {}: comparison lists {} files (the API's cap); diffing trees", self.spec, len(files))
            return None
        return [FileChange(f["status"], f["filename"], f.get("previous_filename")) for f in files]

    def read(self, sha: str, path: str) -> bytes:
        return self.client.raw(self.owner, self.repo, sha, path)

    def url(self, path: str) -> str:
        return f"{self.html_url}/{self.spec.name}/blob/{self.spec.branch}/{path}"


def html_url_for(api_url: str) -> str:
    """``https://api.github.com`` → ``https://github.com``; GitHub Enterprise ``https://h/api/v3`` → ``https://h``."""
    parts = urlsplit(api_url.rstrip("/"))
    host = parts.netloc.removeprefix("api.")
    path = parts.path.removesuffix("/api/v3")
    return f"{parts.scheme}://{host}{path}"


class LocalGitBackend:
    """A local git repository read with ``git`` itself: no network, no API calls."""

    _STATUS = {"A": "added", "M": "modified", "D": "removed", "R": "renamed", "C": "copied", "T": "changed"}

    def __init__(self, spec: RepoSpec) -> None:
        self.spec = spec
        self.path = spec.local_path or ""

    @property
    def calls(self) -> int:
        return 0

    def _git(self, *args: str) -> bytes:
        result = subprocess.run(["git", "-C", self.path, *args], capture_output=True, check=False)
        if result.returncode != 0:
            raise NotFound(f"docs repository {self.spec}: git {' '.join(args)}: {result.stderr.decode(errors='replace').strip()}")
        return result.stdout

    def head(self, etag: str | None) -> Head | None:
        return Head(self._git("rev-parse", "--verify", f"{self.spec.branch}^{{commit}}").decode().strip())

    def files(self, sha: str) -> Iterator[tuple[str, str]]:
        for record in self._git("ls-tree", "-r", "-z", sha).split(b"\0"):
            if record:
                meta, path = record.split(b"\t", 1)
                _mode, kind, blob = meta.split()
                if kind == b"blob":
                    yield path.decode(), blob.decode()

    def changes(self, base: str, head: str) -> list[FileChange]:
        fields = self._git("diff", "--name-status", "-z", "-M", "-C", base, head).split(b"\0")
        changes: list[FileChange] = []
        index = 0
        while index < len(fields) - 1:
            code = fields[index].decode()
            status = self._STATUS.get(code[0], "modified")
            if code[0] in "RC":
                previous, path = fields[index + 1].decode(), fields[index + 2].decode()
                changes.append(FileChange(status, path, previous))
                index += 3
            else:
                changes.append(FileChange(status, fields[index + 1].decode()))
                index += 2
        return changes

    def read(self, sha: str, path: str) -> bytes:
        return self._git("cat-file", "blob", f"{sha}:{path}")

    def url(self, path: str) -> str:
        return f"file://{self.path}/{path}"
