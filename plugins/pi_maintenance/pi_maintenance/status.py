"""``pi status``: what an operator wants to see when something looks stuck."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import click
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pi_framework.api import Database, SyncState, WorkspaceVectorization, get_database, source_errors, stuck_workspaces
from pi_maintenance.jobs import counts_by_status, iso, last_progress

DOCS_SOURCE = "docs"


def _workspaces(session: Session, workspace_id: str | None) -> list[dict[str, Any]]:
    job = WorkspaceVectorization
    scope = [job.workspace_id == workspace_id] if workspace_id else []
    per_status: dict[str, dict[str, int]] = {}
    for ws, status, count in session.execute(
        select(job.workspace_id, job.status, func.count()).where(*scope).group_by(job.workspace_id, job.status)
    ):
        per_status.setdefault(ws, {})[status] = count
    last_live = dict(
        session.execute(select(job.workspace_id, func.max(job.last_live_sync_at)).where(*scope).group_by(job.workspace_id)).all()
    )
    latest_ids = select(func.max(job.id)).where(*scope).group_by(job.workspace_id)
    rows = session.execute(select(job, last_progress).where(job.id.in_(latest_ids)).order_by(job.workspace_id))
    return [
        {
            "workspace_id": latest.workspace_id,
            "job_id": latest.id,
            "status": latest.status,
            "progress_done": latest.progress_done,
            "progress_total": latest.progress_total,
            "attempts": latest.attempts,
            "live_sync_enabled": latest.live_sync_enabled,
            "last_live_sync_at": iso(last_live.get(latest.workspace_id)),
            "last_progress_at": iso(progress_at),
            "error": latest.error,
            "jobs": per_status.get(latest.workspace_id, {}),
        }
        for latest, progress_at in rows
    ]


def _docs(session: Session) -> list[dict[str, Any]]:
    states = session.scalars(select(SyncState).where(SyncState.source == DOCS_SOURCE).order_by(SyncState.scope))
    return [
        {"repo": state.scope, "sha": (state.cursor or {}).get("sha"), "updated_at": iso(state.updated_at)} for state in states
    ]


#: the change feed's status rows (``pi_framework.changefeed.requests.STATUS``), one per slot
CHANGEFEED_STATUS = "changefeed:status"


def _changefeed(session: Session) -> list[dict[str, Any]]:
    rows = session.scalars(select(SyncState).where(SyncState.source == CHANGEFEED_STATUS).order_by(SyncState.scope))
    return [{"slot": row.scope, **(row.cursor or {})} for row in rows]


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


def collect_status(database: Database, workspace_id: str | None = None) -> dict[str, Any]:
    """Job counts by status, the latest job of each workspace with its progress, workspaces with pending work
    (since when, and why), sources skipped because they raise, and the docs SHA of each repository."""
    pending = [row for row in stuck_workspaces(0) if workspace_id in (None, row["workspace_id"])]
    errors = [row for row in source_errors() if workspace_id in (None, row["workspace"]) or row["stage"] == "tick"]
    with database.session() as session:
        return {
            "jobs": counts_by_status(session) if workspace_id is None else None,
            "workspaces": _workspaces(session, workspace_id),
            "pending": pending,
            "sources": errors,
            "docs": _docs(session),
            "changefeed": _changefeed(session),
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
