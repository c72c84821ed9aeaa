"""``PI_DOCS_REPOS`` entries: ``owner/repo[@branch][:path-prefix]`` or ``file:///path/to/repo[@branch][:path-prefix]``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

#: a branch that is not named means the repository's default branch (GitHub and git both resolve ``HEAD``)
DEFAULT_BRANCH = "HEAD"
_GITHUB_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_DOC_SUFFIXES = {".md", ".mdx", ".txt"}
_MD_EXCLUDED = {"readme", "contributing"}


class RepoSpecError(ValueError):
    """An entry of ``PI_DOCS_REPOS`` cannot be understood."""


@dataclass(frozen=True)
class RepoSpec:
    """One configured repository.

    ``name`` qualifies document ids (``docs:<name>:<path>``): ``owner/repo`` for GitHub, the
    absolute path for a local repository, so two repositories never share an id.
    """

    name: str
    branch: str = DEFAULT_BRANCH
    prefix: str = ""
    local_path: str | None = None

    @property
    def is_local(self) -> bool:
        return self.local_path is not None

    @property
    def owner_repo(self) -> tuple[str, str]:
        owner, repo = self.name.split("/", 1)
        return owner, repo

    @property
    def scope(self) -> str:
        """Scope of this entry's state row (the plugin's ``docs`` state, :data:`pi_docs.sync.STATE`)."""
        return f"{self.name}@{self.branch}" + (f":{self.prefix}" if self.prefix else "")

    def document_id(self, path: str) -> str:
        return f"docs:{self.name}:{path}"

    @property
    def id_prefix(self) -> str:
        return f"docs:{self.name}:{self.prefix}"

    def wants(self, path: str) -> bool:
        """Is *path* documentation under this entry's prefix (``.mdx``, ``.txt``, ``.md`` but README/CONTRIBUTING)?"""
        if self.prefix and not (path == self.prefix or path.startswith(self.prefix + "/")):
            return False
        pure = PurePosixPath(path)
        suffix = pure.suffix.lower()
        if suffix not in _DOC_SUFFIXES:
            return False
        return not (suffix == ".md" and pure.stem.lower() in _MD_EXCLUDED)

    def __str__(self) -> str:
        return self.scope


def parse_repo_spec(text: str) -> RepoSpec:
    """Parse one entry; raise :class:`RepoSpecError` with the entry and what is expected."""
    raw = text.strip()
    local_path: str | None = None
    rest = raw
    if raw.startswith("file://"):
        rest = raw[len("file://") :]
        if not rest.startswith("/"):
            raise RepoSpecError(f"docs repository {raw!r}: a file:// entry needs an absolute path (file:///path/to/repo)")
    prefix = ""
    if ":" in rest:
        rest, prefix = rest.split(":", 1)
    branch = DEFAULT_BRANCH
    if "@" in rest:
        rest, branch = rest.rsplit("@", 1)
        if not branch:
            raise RepoSpecError(f"docs repository {raw!r}: empty branch after '@'")
    prefix = prefix.strip("/")
    if raw.startswith("file://"):
        local_path = rest.rstrip("/") or "/"
        name = local_path
    else:
        if not _GITHUB_NAME.match(rest):
            raise RepoSpecError(f"docs repository {raw!r}: expected owner/repo[@branch][:path-prefix] or file:///path")
        name = rest
    return RepoSpec(name=name, branch=branch, prefix=prefix, local_path=local_path)


def parse_repo_specs(entries: list[str]) -> list[RepoSpec]:
    return [parse_repo_spec(entry) for entry in entries]
