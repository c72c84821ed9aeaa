"""The metrics exporter (built-in plugin ``metrics_exporter``): ``/metrics`` for ``pi worker`` and ``pi metrics``, and
what the PI database says at scrape time.

The recorder (:mod:`pi_framework.metrics`) counts what happens in each process; this plugin serves the sum of every
process's files and adds, at scrape time, what *is* (jobs by status, pending work and freshness per workspace) from
the PI database (:class:`StateCollector`, a handful of queries). Its hooks switch recording on in worker processes
(``worker_start``), drop a stopping process's live gauges (``worker_stop``) and add ``pi metrics``.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from pi_framework import hookimpl, runtime
from pi_framework.metrics import (
    DEFAULT_EXPORTER_PORT,
    FRESHNESS_BUCKETS,
    MetricsUnavailable,
    available,
    directory,
    prepare,
    process_stopped,
    setup,
    sweep_dead,
    warn_once,
)

if TYPE_CHECKING:
    import click

    from pi_framework.settings import Settings


# ---------------------------------------------------------------------- scrape time: what the PI database says
def read_state(settings: Settings, database: Any = None) -> dict[str, Any]:
    """Jobs by status, active jobs' progress, live-synced workspaces and pending work (four small queries)."""
    from sqlalchemy import func, select

    from pi_framework.db import get_database
    from pi_framework.db.models import JobStatus, SyncState, utcnow
    from pi_framework.db.models import WorkspaceVectorization as Job
    from pi_framework.sync import state
    from pi_framework.sync.jobs import Jobs, as_utc

    database = database or get_database(settings)
    now = utcnow()
    with database.session() as session:
        by_status = {status: count for status, count in session.execute(select(Job.status, func.count()).group_by(Job.status))}
        active = session.execute(
            select(
                Job.workspace_id,
                Job.status,
                Job.progress_done,
                Job.progress_total,
                func.coalesce(Job.progress_at, Job.started_at, Job.created_at),
            ).where(Job.status.in_(JobStatus.ACTIVE))
        ).all()
        markers = {
            row.scope: dict(row.cursor) for row in session.scalars(select(SyncState).where(SyncState.source == state.PENDING))
        }
    live = Jobs(database, settings).live_sync_workspaces()
    pending: dict[str, dict[str, float]] = {}
    for workspace_id, marker in markers.items():
        try:
            since = datetime.fromisoformat(marker["since"])
        except (KeyError, TypeError, ValueError):
            continue
        age = (now - (as_utc(since) or now)).total_seconds()
        # a flag not measured yet (the live sync measures) stands for at least one change
        pending[workspace_id] = {"seconds": max(0.0, age), "changes": float(marker.get("pending") or 1)}
    return {
        "jobs": by_status,
        "active": [
            {
                "workspace_id": workspace_id,
                "status": status,
                "done": done or 0,
                "total": total,
                "silent_seconds": max(0.0, (now - (as_utc(last) or now)).total_seconds()),
            }
            for workspace_id, status, done, total, last in active
        ],
        "live": live,
        "pending": pending,
    }


#: the core's settings exported as ``pi_settings_seconds{setting}`` so alert rules follow the deployment's configuration;
#: every plugin's numeric ``*_INTERVAL`` setting is exported too (:func:`_plugin_intervals`)
_SETTINGS_SECONDS = (
    "CELERY_VECTOR_SYNC_INTERVAL",
    "PI_HEARTBEAT_TIMEOUT_SECONDS",
    "PI_PENDING_ALERT_SECONDS",
)


def _plugin_intervals() -> Iterator[tuple[str, float]]:
    """``(name, seconds)`` of every loaded plugin's numeric setting named ``*_INTERVAL`` (a beat entry's period)."""
    for model in runtime.get_registry().settings_models.values():
        for name in type(model).model_fields:
            value = getattr(model, name)
            if name.endswith("_INTERVAL") and isinstance(value, int | float) and not isinstance(value, bool):
                yield name, float(value)


class StateCollector:
    """A prometheus_client collector that reads :func:`read_state` at every scrape."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def describe(self) -> list[Any]:
        return []  # names vary with the data; nothing is read when the collector is registered

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily

        try:
            figures = read_state(self.settings)
        except Exception as exc:  # noqa: BLE001 - a scrape while the database is down says so
            warn_once(
                f"scrape:{type(exc).__name__}", "metrics: the PI database could not be read: {}: {}", type(exc).__name__, exc
            )
            yield GaugeMetricFamily("pi_metrics_database_up", "1 if the exporter could read the PI database.", value=0)
            return
        yield GaugeMetricFamily("pi_metrics_database_up", "1 if the exporter could read the PI database.", value=1)
        from pi_framework.db.models import JobStatus

        jobs = GaugeMetricFamily("pi_jobs", "Vectorization jobs, by status.", labels=["status"])
        for status in sorted({*JobStatus.ACTIVE, JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELLED, *figures["jobs"]}):
            jobs.add_metric([status], figures["jobs"].get(status, 0))
        yield jobs
        active = figures["active"]
        yield GaugeMetricFamily(
            "pi_jobs_documents_done", "Documents done, summed over queued and running jobs.", value=sum(a["done"] for a in active)
        )
        yield GaugeMetricFamily(
            "pi_jobs_documents_total",
            "Documents to do, summed over queued and running jobs (as far as known).",
            value=sum(a["total"] or 0 for a in active),
        )
        yield GaugeMetricFamily(
            "pi_jobs_stalled_seconds",
            "Seconds since the least recent progress of a running job (0: none running).",
            value=max((a["silent_seconds"] for a in active if a["status"] == JobStatus.RUNNING), default=0.0),
        )
        yield GaugeMetricFamily(
            "pi_jobs_oldest_queued_seconds",
            "Seconds the oldest queued job has waited (0: none queued).",
            value=max((a["silent_seconds"] for a in active if a["status"] == JobStatus.QUEUED), default=0.0),
        )
        settings = GaugeMetricFamily(
            "pi_settings_seconds",
            "Intervals and limits the alert rules compare with (this exporter's settings).",
            labels=["setting"],
        )
        for name in _SETTINGS_SECONDS:
            settings.add_metric([name], float(getattr(self.settings, name)))
        for name, seconds in _plugin_intervals():
            settings.add_metric([name], seconds)
        yield settings
        from pi_framework.changefeed.requests import metric_families

        yield from metric_families(self.settings)  # the change feed's slot lag and state
        live, pending = figures["live"], figures["pending"]
        workspaces = sorted(set(live) | set(pending))
        per_workspace = len(workspaces) <= self.settings.PI_METRICS_MAX_WORKSPACES
        yield GaugeMetricFamily(
            "pi_metrics_per_workspace",
            "1 while per-workspace series are exported (at most PI_METRICS_MAX_WORKSPACES workspaces).",
            value=int(per_workspace),
        )
        yield GaugeMetricFamily("pi_live_sync_workspaces", "Workspaces kept in sync (latest job succeeded).", value=len(live))
        yield GaugeMetricFamily("pi_pending_workspaces", "Workspaces with changes not yet searchable.", value=len(pending))
        yield GaugeMetricFamily(
            "pi_pending_changes",
            "Changes not yet searchable, summed (each workspace counted up to PI_LIVE_SYNC_MAX_MISSING + 1).",
            value=sum(p["changes"] for p in pending.values()),
        )
        ages = [pending[w]["seconds"] if w in pending else 0.0 for w in workspaces]
        yield GaugeMetricFamily(
            "pi_freshness_max_seconds", "Age of the oldest change not yet searchable, any workspace (0: all caught up).",
            value=max(ages, default=0.0),
        )  # fmt: skip
        buckets, total = [], 0.0
        for bound in FRESHNESS_BUCKETS:
            buckets.append((str(float(bound)), sum(age <= bound for age in ages)))
        buckets.append(("+Inf", len(ages)))
        total = sum(ages)
        yield GaugeHistogramMetricFamily(
            "pi_freshness_seconds",
            "Workspaces by age of their oldest change not yet searchable (0 when caught up), now.",
            buckets=buckets,
            gsum_value=total,
        )
        if not per_workspace:
            return
        freshness = GaugeMetricFamily(
            "pi_workspace_freshness_seconds", "Age of the workspace's oldest change not yet searchable (0: caught up).",
            labels=["workspace"],
        )  # fmt: skip
        changes = GaugeMetricFamily(
            "pi_workspace_pending_changes", "Changes of the workspace not yet searchable.", labels=["workspace"]
        )
        for workspace_id, age in zip(workspaces, ages, strict=True):
            freshness.add_metric([workspace_id], age)
            changes.add_metric([workspace_id], pending.get(workspace_id, {}).get("changes", 0.0))
        yield freshness
        yield changes
        progress = GaugeMetricFamily(
            "pi_job_progress_ratio", "Done/total of each running vectorization job.", labels=["workspace"]
        )
        for job in active:
            if job["status"] == JobStatus.RUNNING and job["total"]:
                progress.add_metric([job["workspace_id"]], min(1.0, job["done"] / job["total"]))
        yield progress


class _Sweeper:
    """Sweeps dead processes' live gauges before the multiprocess files are read (registered first)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        try:
            sweep_dead(self.path)
        except OSError as exc:
            warn_once("sweep", "metrics: sweeping dead processes failed: {}", exc)
        return iter(())


def exporter_registry(settings: Settings, *, sweep: bool = False, database_state: bool = True) -> Any:
    """The registry an exporter serves: every process's recorded metrics plus :class:`StateCollector`."""
    from prometheus_client import CollectorRegistry, multiprocess

    path = prepare(settings)
    registry = CollectorRegistry()
    if sweep:
        registry.register(_Sweeper(path))
    multiprocess.MultiProcessCollector(registry, path=str(path))
    if database_state:
        registry.register(StateCollector(settings))
    return registry


def serve(settings: Settings, port: int, host: str = "0.0.0.0", *, sweep: bool = False) -> tuple[Any, Any]:
    """Serve ``/metrics`` on *host*:*port* from a daemon thread; returns ``(server, thread)``."""
    from prometheus_client import start_http_server

    registry = exporter_registry(settings, sweep=sweep)
    if sweep:
        sweep_dead(directory(settings))  # processes of an earlier run
    try:
        server, thread = start_http_server(port, host, registry=registry)
    except OSError as exc:  # the port is taken, or not ours to bind
        raise MetricsUnavailable(f"cannot serve /metrics on {host}:{port}: {exc.strerror or exc}") from exc
    logger.info("metrics: serving http://{}:{}/metrics from {}", host, port, directory(settings))
    return server, thread


def serve_worker(settings: Settings) -> None:
    """``pi worker``: serve the endpoint when ``PI_METRICS_PORT`` is set, and record in this (main) process too."""
    if settings.PI_METRICS_PORT is None:
        return
    if not available():
        raise SystemExit(
            "pi-framework: PI_METRICS_PORT is set but prometheus_client is not installed: pip install 'pi-framework[metrics]'"
        )
    setup(settings)
    atexit.register(process_stopped, settings)
    try:
        serve(settings, settings.PI_METRICS_PORT, sweep=True)
    except MetricsUnavailable as exc:
        raise SystemExit(f"pi-framework: PI_METRICS_PORT={settings.PI_METRICS_PORT}: {exc}") from None


# ---------------------------------------------------------------------- hooks
@hookimpl(specname="worker_start")
def metrics_worker_start(settings: Settings) -> None:
    setup(settings)


@hookimpl(specname="worker_stop")
def metrics_worker_stop(settings: Settings) -> None:
    process_stopped(settings)


@hookimpl(specname="register_commands")
def metrics_commands(cli: click.Group) -> None:
    import click

    @cli.command("metrics")
    @click.option(
        "--port", type=int, default=None, help=f"Port of /metrics (default PI_METRICS_PORT, else {DEFAULT_EXPORTER_PORT})."
    )
    @click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
    @click.option(
        "--sweep-dead",
        is_flag=True,
        help="Drop live gauges of worker processes that are gone (only where this command sees the workers' pids).",
    )
    @click.option("--once", is_flag=True, help="Print one scrape and exit.")
    def metrics_command(port: int | None, host: str, sweep_dead: bool, once: bool) -> None:
        """Prometheus exporter for workers run with plain `celery worker` (same PI_METRICS_DIR / PI_DATA_DIR)."""
        from pi_framework.settings import get_settings

        if not available():
            raise click.ClickException("prometheus_client is not installed: pip install 'pi-framework[metrics]'")
        settings = get_settings()
        if once:
            from prometheus_client import generate_latest

            click.echo(generate_latest(exporter_registry(settings, sweep=sweep_dead)).decode(), nl=False)
            return
        port = port or settings.PI_METRICS_PORT or DEFAULT_EXPORTER_PORT
        try:
            server, thread = serve(settings, port, host, sweep=sweep_dead)
        except MetricsUnavailable as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"serving http://{host}:{port}/metrics (metrics of {directory(settings)}); Ctrl-C stops")
        try:
            while thread.is_alive():
                thread.join(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
