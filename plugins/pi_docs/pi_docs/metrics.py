"""pi_docs' own metrics (declared through ``pi_framework.api.metrics``: no-ops unless the process records)."""

from __future__ import annotations

import time

from pi_framework.api import metrics

docs_syncs = metrics.counter("pi_docs_syncs_total", "Docs syncs per repository, by result.", ["repo", "status"])
docs_success = metrics.gauge(
    "pi_docs_last_success_timestamp_seconds", "When each repository last synced without failure.", ["repo"], mode="max"
)
docs_failure = metrics.gauge("pi_docs_last_failure_timestamp_seconds", "When each repository's sync last failed.", ["repo"], mode="max")
github_requests = metrics.counter("pi_github_requests_total", "GitHub requests answered, by HTTP status.", ["code"])
github_remaining = metrics.gauge("pi_github_rate_limit_remaining", "Requests left in GitHub's rate-limit window (last answer).")


def docs_synced(repo: str, status: str) -> None:
    """One repository's sync ended with *status* (``synced``, ``unchanged`` or ``failed``)."""
    docs_syncs.inc(repo=repo, status=status)
    (docs_failure if status == "failed" else docs_success).set(time.time(), repo=repo)


def github_response(status: int, remaining: str | None) -> None:
    """GitHub answered *status*; *remaining* is its ``x-ratelimit-remaining`` header."""
    github_requests.inc(code=str(status) if status in (200, 304, 403, 404, 429) else f"{status // 100}xx")
    if remaining is not None:
        try:
            github_remaining.set(float(remaining))
        except ValueError:
            pass
