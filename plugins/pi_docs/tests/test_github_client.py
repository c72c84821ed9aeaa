"""The GitHub client against the fake server: 304, rate limits, retries, 404s, call counting (waits recorded, not slept)."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from conftest import REPO
from pi_docs.github import FileTooLarge, GitHubClient, GitHubError, NotFound, RateLimited


@pytest.fixture
def client(fake_github, git_repo):
    git_repo.commit("docs", {"a.md": "# A\n"})
    waits: list[float] = []
    made = GitHubClient(fake_github.api_url, fake_github.raw_url, "tok", retries=3, backoff=0.5, max_wait=120, sleep=waits.append)
    made.waits = waits
    return made


def head(client):
    return client.head_commit(*REPO.split("/"), "HEAD")


def test_etag_round_trip_gives_a_304(client, fake_github, git_repo):
    sha, etag = head(client)
    assert sha == git_repo.head() and etag
    assert client.head_commit(*REPO.split("/"), "HEAD", etag) is None
    assert client.calls == 2 and fake_github.requests[-1][1]["if-none-match"] == etag


def test_retry_after_is_honoured(client, fake_github):
    fake_github.script("/commits/", 429, {"retry-after": "7"}, {"message": "secondary rate limit"})
    assert head(client)
    assert client.waits == [7.0] and client.calls == 2


def test_primary_limit_waits_until_reset(client, fake_github):
    reset = int(time.time()) + 30
    fake_github.script(
        "/commits/", 403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}, {"message": "API rate limit exceeded"}
    )
    assert head(client)
    [wait] = client.waits
    assert 25 <= wait <= 32 and client.calls == 2


def test_primary_limit_beyond_max_wait_gives_up(client, fake_github):
    reset = int(time.time()) + 3600
    fake_github.script(
        "/commits/", 429, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}, {"message": "API rate limit exceeded"}
    )
    with pytest.raises(RateLimited, match="giving up for this run"):
        head(client)
    assert client.waits == [] and client.calls == 1


def test_secondary_limit_without_retry_after_waits_a_minute(client, fake_github):
    fake_github.script("/commits/", 403, {}, {"message": "You have exceeded a secondary rate limit"})
    assert head(client)
    assert client.waits == [60.0]


def test_forbidden_that_is_not_a_rate_limit_fails_at_once(client, fake_github):
    fake_github.script("/commits/", 403, {"x-ratelimit-remaining": "4000"}, {"message": "Resource not accessible by integration"})
    with pytest.raises(GitHubError, match="not accessible"):
        head(client)
    assert client.calls == 1


def test_server_errors_are_retried_with_backoff(client, fake_github):
    fake_github.script("/commits/", 500, times=2)
    assert head(client)
    assert client.waits == [0.5, 1.0] and client.calls == 3


def test_server_errors_give_up_after_the_retries(client, fake_github):
    fake_github.script("/commits/", 503, times=10)
    with pytest.raises(GitHubError, match="HTTP 503"):
        head(client)
    assert client.calls == 4


def test_connection_errors_are_retried():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits: list[float] = []
    client = GitHubClient(
        f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}", retries=2, backoff=0.1, sleep=waits.append, timeout=2
    )
    with pytest.raises(GitHubError, match="ConnectionError"):
        head(client)
    assert client.calls == 3 and waits == [0.1, 0.2]


def test_missing_branch_is_a_not_found_naming_it(client):
    with pytest.raises(NotFound, match="'nope'"):
        client.head_commit(*REPO.split("/"), "nope")


def test_a_json_commit_answer_is_understood_too(client, fake_github):
    fake_github.script("/commits/", 200, {"etag": '"e1"'}, {"sha": "a" * 40, "commit": {"tree": {"sha": "b" * 40}}})
    assert head(client) == ("a" * 40, '"e1"')


def test_raw_files_are_capped_by_content_length_before_any_download(fake_github, git_repo):
    sha = git_repo.commit("docs", {"small.md": "# S\n", "big.md": "x" * 5000})
    client = GitHubClient(fake_github.api_url, fake_github.raw_url, max_file_bytes=1000)
    assert client.raw(*REPO.split("/"), sha, "small.md") == b"# S\n"
    with pytest.raises(FileTooLarge, match=r"big.md at .*: 5000 bytes, larger than the 1000-byte cap; not downloaded"):
        client.raw(*REPO.split("/"), sha, "big.md")
    assert client.calls == 2, "a file too large is not retried"


def test_raw_files_without_a_length_are_streamed_and_cut_at_the_cap():
    chunk, sent = b"y" * 65536, []

    def endless():  # a body that never ends: only a streamed, capped read returns
        while True:
            sent.append(len(chunk))
            yield chunk

    def reply(request: httpx.Request) -> httpx.Response:
        assert request.extensions["timeout"]["read"] == 7.0, "every request carries the configured timeout"
        return httpx.Response(200, content=endless())

    http = httpx.Client(transport=httpx.MockTransport(reply))
    client = GitHubClient("http://api", "http://raw", timeout=7, max_file_bytes=1024 * 1024, http=http)
    with pytest.raises(FileTooLarge, match="more than the 1048576-byte cap; download stopped"):
        client.raw("acme", "docs", "a" * 40, "docs/endless.md")
    assert sum(sent) <= 1024 * 1024 + 2 * len(chunk), "reading stopped right after the cap"
