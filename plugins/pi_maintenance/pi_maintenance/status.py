"""``pi status``: what an operator wants to see when something looks stuck."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import click

from pi_framework.api import (
    Database,
    PluginState,
    changefeed_status,
    get_database,
    get_registry,
    index_generations,
    job_counts,
    source_errors,
    stuck_workspaces,
    workspace_jobs,
)
from pi_maintenance.jobs import iso

#: the docs plugin's rows (its ``register_state_names`` name): a repository's last synced SHA per scope
DOCS_STATE = "docs"


def _workspaces(database: Database, workspace_id: str | None) -> list[dict[str, Any]]:
    return [
        {
            "workspace_id": jobs.workspace_id,
            "job_id": jobs.latest.id,
            "status": jobs.latest.status,
            "progress_done": jobs.latest.progress_done,
            "progress_total": jobs.latest.progress_total,
            "attempts": jobs.latest.attempts,
            "live_sync_enabled": jobs.latest.live_sync_enabled,
            "last_live_sync_at": iso(jobs.last_live_sync_at),
            "last_progress_at": iso(jobs.latest.last_progress_at),
            "error": jobs.latest.error,
            "jobs": jobs.by_status,
        }
        for jobs in workspace_jobs(workspace_id, database)
    ]


def _docs() -> list[dict[str, Any]]:
    """The docs plugin's repositories, while it is loaded (its rows are its own)."""
    if DOCS_STATE not in get_registry().reserved_state_names:
        return []
    rows = PluginState.reserved(DOCS_STATE).rows()
    return [{"repo": row.scope, "sha": row.value.get("sha"), "updated_at": iso(row.updated_at)} for row in rows]


def _changefeed() -> list[dict[str, Any]]:
    return [{"slot": slot, **status} for slot, status in sorted(changefeed_status().items())]


def _changefeed_line(feed: dict[str, Any]) -> str:
    line = f"change feed {feed['slot']}: {feed.get('mode') or '?'}"
    if feed.get("reason"):
        line += f" ({feed['reason']})"
    if feed.get("lag_bytes") is not None:
        line += f", slot lag {feed['lag_bytes']} bytes"
    if feed.get("mode") != "feed":
        line += "; changes are found by polling updated_at"
    return line


def _source_line(row: dict[str, Any]) -> str:
    where = f" (workspace {row['workspace']})" if row["workspace"] else ""
    line = f"source {row['source']}: skipped, failing in {row['stage'].replace('_', ' ')}{where} since {row['since']}: {row['error']}"
    if row["stale"]:
        return line + f" (not seen since {row['at']})"
    return line + f"; fix it, or switch it off: PI_DISABLE_PLUGINS={row['plugin'] or row['source']}"


def _generation_line(row: dict[str, Any]) -> str:
    line = f"index generation {row['generation']}: {row['status']}, {row['embedder']} {row['model']}"
    if row["status"] == "building":
        line += f", {row['scopes_copied']}/{row['scopes_total']} scopes copied ({row['chunks_copied']} chunks)"
        if row["error"]:
            line += f"; the copy fails: {row['error']}"
    return line


def collect_status(database: Database, workspace_id: str | None = None) -> dict[str, Any]:
    """Job counts by status, the latest job of each workspace with its progress, workspaces with pending work
    (since when, and why), sources skipped because they raise, the index generations (a model change's progress),
    and the docs SHA of each repository."""
    pending = [row for row in stuck_workspaces(0) if workspace_id in (None, row["workspace_id"])]
    errors = [row for row in source_errors() if workspace_id in (None, row["workspace"]) or row["stage"] == "tick"]
    return {
        "jobs": job_counts(database) if workspace_id is None else None,
        "workspaces": _workspaces(database, workspace_id),
        "pending": pending,
        "sources": errors,
        "docs": _docs(),
        "changefeed": _changefeed(),
        "generations": index_generations(),
    }


def _progress(row: dict[str, Any]) -> str:
    total = row["progress_total"]
    return f"{row['progress_done']}/{total}" if total is not None else str(row["progress_done"])


def _print(report: dict[str, Any]) -> None:
    if report["jobs"] is not None:
        counts = " ".join(f"{status}={count}" for status, count in sorted(report["jobs"].items())) or "none"
        click.echo(f"jobs: {counts}")
    if report["workspaces"]:
        click.echo(
            f"{'WORKSPACE':<38} {'STATUS':<8} {'PROGRESS':>11} {'LIVE':<4} {'LAST LIVE SYNC':<32} {'LAST PROGRESS':<32} ERROR"
        )
    for row in report["workspaces"]:
        click.echo(
            f"{row['workspace_id']:<38} {row['status']:<8} {_progress(row):>11} {'on' if row['live_sync_enabled'] else 'off':<4} "
            f"{row['last_live_sync_at'] or '-':<32} {row['last_progress_at'] or '-':<32} {row['error'] or ''}"
        )
    for row in report["pending"]:
        click.echo(f"pending {row['workspace_id']}: {row['pending']} change(s) since {row['pending_since']}: {row['why']}")
    for row in report.get("sources") or []:
        click.echo(_source_line(row))
    for feed in report.get("changefeed") or []:
        click.echo(_changefeed_line(feed))
    if not report.get("changefeed"):
        click.echo("change feed: never started (pi changefeed status); changes are found by polling updated_at")
    for row in report.get("generations") or []:
        click.echo(_generation_line(row))
    for repo in report["docs"]:
        click.echo(f"docs {repo['repo']}: {repo['sha'] or '-'} (updated {repo['updated_at']})")


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option("--workspace", "workspace_id", help="Only this workspace.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.option("--watch", is_flag=True, help="Redraw every --interval seconds until Ctrl-C.")
    @click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True, help="Seconds between redraws.")
    def status(workspace_id: str | None, as_json: bool, watch: bool, interval: float) -> None:
        """Jobs by workspace and status with progress, last live sync, last docs SHA per repository."""
        try:
            while True:
                try:
                    report = collect_status(get_database(), workspace_id)
                except Exception as exc:  # noqa: BLE001 - watching goes on through an outage; a single look fails
                    if not watch:
                        raise
                    report = {"error": f"{type(exc).__name__}: {exc}"}
                if watch:
                    click.clear()
                    click.echo(f"pi status, {datetime.now():%H:%M:%S}, every {interval:g}s (Ctrl-C stops)")
                if as_json or "error" in report:
                    click.echo(json.dumps(report, indent=2))
                else:
                    _print(report)
                if not watch:
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            if not watch:
                raise
