"""Fixtures of the pi_docs tests: a git repository, the fake GitHub serving it, and settings pointing at both."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_github import FakeGitHub, GitRepo, serve  # noqa: E402
from pi_docs.sync import DocsSync  # noqa: E402

from pi_framework.pipeline.indexer import Indexer  # noqa: E402
from pi_framework.settings import Settings  # noqa: E402

REPO = "acme/docs"


@pytest.fixture
def git_repo(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path / "repo")


@pytest.fixture
def fake_github(git_repo: GitRepo) -> Iterator[FakeGitHub]:
    fake = FakeGitHub()
    fake.add_repo(REPO, git_repo)
    server, _thread = serve(fake)
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def docs_settings(pi_env, fake_github: FakeGitHub) -> Callable[..., Settings]:
    """``docs_settings(**overrides)``: settings for the fake GitHub, hashing embedder, embedded sink, fast retries."""

    def make(**overrides: object) -> Settings:
        values = {
            "PI_DOCS_REPOS": REPO,
            "PI_GITHUB_API_URL": fake_github.api_url,
            "PI_GITHUB_RAW_URL": fake_github.raw_url,
            "PI_GITHUB_BACKOFF": "0.01",
            "PI_GITHUB_MAX_WAIT": "5",
            "PI_GITHUB_TIMEOUT": "5",
            "PI_EMBEDDER": "hashing",
            **overrides,
        }
        return pi_env(**values)

    return make


@pytest.fixture
def run_sync(docs_settings) -> Callable[..., list]:
    """``run_sync(repos=None, full=False, **settings)``: one sync run, as the periodic task does it."""
    settings_holder: dict[str, Settings] = {}

    def run(repos: list[str] | None = None, full: bool = False, **overrides: object) -> list:
        if overrides or "settings" not in settings_holder:
            settings_holder["settings"] = docs_settings(**overrides)
        return DocsSync(settings_holder["settings"]).run(repos, full=full)

    return run


def indexed_ids(settings: Settings | None = None) -> set[str]:
    return set(Indexer(settings=settings).indexed_ids(None, "docs"))


@pytest.fixture
def caplog_loguru() -> Iterator[pytest.LogCaptureFixture]:
    """Everything logged through loguru during the test, as ``.text``."""
    from loguru import logger

    class Captured:
        def __init__(self) -> None:
            self.lines: list[str] = []

        @property
        def text(self) -> str:
            return "\n".join(self.lines)

    captured = Captured()
    handler = logger.add(lambda message: captured.lines.append(str(message)), level="DEBUG", format="{level} {message}")
    yield captured
    logger.remove(handler)
