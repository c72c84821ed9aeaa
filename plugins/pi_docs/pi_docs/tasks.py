"""The Celery task and health check of the docs sync."""

from __future__ import annotations

from typing import Any

from pi_docs.repos import RepoSpecError, parse_repo_spec
from pi_docs.settings import docs_settings
from pi_docs.sync import STATE, DocsSync, RepoResult
from pi_framework.api import get_registry


def summarise(results: list[RepoResult]) -> dict[str, Any]:
    """Totals of a run (what the task returns and the task-finish log line shows)."""
    return {
        "repos": len(results),
        "synced": sum(r.status == "synced" for r in results),
        "unchanged": sum(r.status == "unchanged" for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "added": sum(r.added for r in results),
        "updated": sum(r.updated for r in results),
        "removed": sum(r.removed for r in results),
        "api_calls": sum(r.api_calls for r in results),
    }


def sync_docs_periodic_task(repo: str | None = None, full: bool = False) -> dict[str, Any]:
    """Sync every repository of ``PI_DOCS_REPOS`` (or just *repo*); a repository that fails is retried next run."""
    settings = get_registry().settings
    return summarise(DocsSync(settings).run([repo] if repo else None, full=full))


def docs_health() -> dict[str, Any]:
    """Last synced commit of each configured repository (from the PI database; no API call)."""
    repos: dict[str, Any] = {}
    states = STATE.all()
    for entry in docs_settings().PI_DOCS_REPOS:
        try:
            scope = parse_repo_spec(entry).scope
        except RepoSpecError as exc:
            return {"ok": False, "error": str(exc)}
        cursor = states.get(scope)
        repos[scope] = None
        if cursor is not None:
            repos[scope] = {
                "sha": cursor.get("sha"),
                "pending": len(cursor.get("pending", [])),
                "last_error": cursor.get("last_error"),
            }
    return {
        "repos": repos,
        "never_synced": [scope for scope, state in repos.items() if state is None or not state["sha"]],
        "failing": [scope for scope, state in repos.items() if state and state["last_error"]],
    }
