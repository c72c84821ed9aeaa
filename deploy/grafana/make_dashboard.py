"""Writes pi-framework.json, the Grafana dashboard of pi-framework's metrics: ``python deploy/grafana/make_dashboard.py``.

Import the JSON in Grafana (Dashboards → New → Import) and pick the Prometheus data source. Figures read from the
PI database (jobs, freshness, pending work) are the same on every exporter, so they are aggregated with ``max``;
figures the worker processes count are summed over the machines.
"""

from __future__ import annotations

import json
from pathlib import Path

DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"


def target(expr: str, legend: str = "", ref: str = "A") -> dict:
    return {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "refId": ref, "range": True}


def panel(title: str, kind: str, targets: list[dict], unit: str = "short", description: str = "", **options: object) -> dict:
    body: dict = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }
    if kind == "timeseries":
        body["fieldConfig"]["defaults"]["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10}
        body["options"] = {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}
    if kind == "stat":
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value", "graphMode": "area"}
    body["options"].update(options)
    return body


def row(title: str) -> dict:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def quantiles(metric: str, by: str = "", rate: bool = True) -> list[dict]:
    inner = f"rate({metric}_bucket[{RATE}])" if rate else metric + "_bucket"
    group = f"le{', ' + by if by else ''}"
    aggregate = "sum" if rate else "max"
    labels = "".join(f" {{{{{label.strip()}}}}}" for label in by.split(",") if label.strip())
    return [
        target(f"histogram_quantile({q}, {aggregate} by ({group}) ({inner}))", f"p{int(q * 100)}{labels}")
        for q in (0.5, 0.9, 0.99)
    ]


LAYOUT: list[tuple[dict, int]] = [
    (row("Freshness: how long until a change is searchable"), 24),
    (
        panel(
            "Oldest change not yet searchable",
            "stat",
            [target("max(pi_freshness_max_seconds)")],
            "s",
            "Age of the oldest change any workspace has not made searchable yet (0: all caught up).",
        ),
        6,
    ),
    (panel("Pending changes", "stat", [target("max(pi_pending_changes)")], "short", "Changes not yet searchable."), 6),
    (panel("Workspaces behind", "stat", [target("max(pi_pending_workspaces)")], "short"), 6),
    (panel("Live-synced workspaces", "stat", [target("max(pi_live_sync_workspaces)")], "short"), 6),
    (
        panel(
            "Freshness by workspace",
            "timeseries",
            [target("max by (workspace) (pi_workspace_freshness_seconds)", "{{workspace}}")],
            "s",
            "Per workspace while at most PI_METRICS_MAX_WORKSPACES are live-synced.",
        ),
        12,
    ),
    (
        panel(
            "Freshness across workspaces (now)",
            "timeseries",
            quantiles("pi_freshness_seconds", rate=False),
            "s",
            "Quantiles of the workspaces' current freshness (a gauge histogram: one observation per live-synced workspace).",
        ),
        12,
    ),
    (
        panel(
            "Catch-up time",
            "timeseries",
            quantiles("pi_catchup_seconds"),
            "s",
            "How long workspaces had pending work until it was searchable (observed when it is).",
        ),
        12,
    ),
    (
        panel(
            "Pending changes by workspace",
            "timeseries",
            [target("max by (workspace) (pi_workspace_pending_changes)", "{{workspace}}")],
        ),
        12,
    ),
    (row("Vectorization jobs"), 24),
    (panel("Jobs by status", "timeseries", [target("max by (status) (pi_jobs)", "{{status}}")]), 8),
    (
        panel(
            "Progress of running jobs",
            "bargauge",
            [target("max by (workspace) (pi_job_progress_ratio)", "{{workspace}}")],
            "percentunit",
            orientation="horizontal",
        ),
        8,
    ),
    (
        panel(
            "Documents done / to do (active jobs)",
            "timeseries",
            [target("max(pi_jobs_documents_done)", "done"), target("max(pi_jobs_documents_total)", "total")],
        ),
        8,
    ),
    (
        panel(
            "Stalled running job / oldest queued job",
            "timeseries",
            [
                target("max(pi_jobs_stalled_seconds)", "running, no progress"),
                target("max(pi_jobs_oldest_queued_seconds)", "queued"),
            ],
            "s",
        ),
        12,
    ),
    (
        panel(
            "Re-dispatched and reaped jobs",
            "timeseries",
            [
                target(f"sum by (action) (increase(pi_jobs_redispatched_total[{RATE}]))", "{{action}}"),
                target(f"sum(increase(pi_jobs_reaped_total[{RATE}]))", "reaped"),
            ],
        ),
        12,
    ),
    (row("Throughput"), 24),
    (
        panel(
            "Documents / s",
            "timeseries",
            [target(f"sum by (outcome) (rate(pi_documents_total[{RATE}]))", "{{outcome}}")],
            "ops",
        ),
        8,
    ),
    (
        panel("Chunks / s", "timeseries", [target(f"sum by (action) (rate(pi_chunks_total[{RATE}]))", "{{action}}")], "ops"),
        8,
    ),
    (
        panel(
            "Embedding",
            "timeseries",
            [
                target(f"sum(rate(pi_embedded_texts_total[{RATE}]))", "texts / s"),
                target(
                    f"sum(rate(pi_embedded_texts_total[{RATE}])) / sum(rate(pi_embedding_seconds_sum[{RATE}]))",
                    "texts / s of embedding time",
                ),
                target(
                    f"sum(rate(pi_embedding_batch_size_sum[{RATE}])) / sum(rate(pi_embedding_batch_size_count[{RATE}]))",
                    "texts per call",
                ),
            ],
        ),
        8,
    ),
    (
        panel(
            "Tasks / s by state",
            "timeseries",
            [target(f"sum by (task, state) (rate(pi_tasks_total[{RATE}]))", "{{task}} {{state}}")],
            "ops",
        ),
        12,
    ),
    (panel("Task duration p90", "timeseries", quantiles("pi_task_seconds", "task")[1:2], "s"), 12),
    (row("Errors and dependencies"), 24),
    (
        panel(
            "Documents not indexed, by reason",
            "timeseries",
            [target(f"sum by (reason) (increase(pi_document_failures_total[{RATE}]))", "{{reason}}")],
        ),
        8,
    ),
    (
        panel(
            "Sink errors and refused items",
            "timeseries",
            [
                target(f"sum by (sink, operation) (rate(pi_sink_errors_total[{RATE}]))", "{{sink}} {{operation}} errors"),
                target(f"sum by (sink) (rate(pi_sink_refused_total[{RATE}]))", "{{sink}} refused"),
            ],
            "ops",
        ),
        8,
    ),
    (panel("Sink latency p90", "timeseries", quantiles("pi_sink_seconds", "sink, operation")[1:2], "s"), 8),
    (
        panel(
            "PI database",
            "timeseries",
            [
                target("max(pi_db_breaker_state)", "breaker (0 closed, 1 half-open, 2 open)"),
                target("sum(pi_db_pool_checked_out)", "connections checked out"),
                target("min(pi_metrics_database_up)", "exporter reads the database"),
                target(f"sum by (state) (increase(pi_db_breaker_transitions_total[{RATE}]))", "breaker -> {{state}}"),
            ],
        ),
        12,
    ),
    (
        panel(
            "Live-sync tick",
            "timeseries",
            [
                target(
                    'time() - max(pi_task_last_success_timestamp_seconds{task="pi.celery_app.trigger_live_sync"})',
                    "since last tick",
                )
            ],
            "s",
            "Seconds since the live-sync tick last succeeded (beat and workers alive).",
        ),
        12,
    ),
    (row("Docs and chats"), 24),
    (
        panel(
            "Since each repository's last successful docs sync",
            "timeseries",
            [target("time() - max by (repo) (pi_docs_last_success_timestamp_seconds)", "{{repo}}")],
            "s",
        ),
        8,
    ),
    (
        panel(
            "GitHub",
            "timeseries",
            [
                target("max(pi_github_rate_limit_remaining)", "rate limit remaining"),
                target(f"sum by (code) (increase(pi_github_requests_total[{RATE}]))", "HTTP {{code}}"),
            ],
        ),
        8,
    ),
    (
        panel(
            "Chat messages",
            "timeseries",
            [target(f"sum by (outcome) (increase(pi_chat_messages_total[{RATE}]))", "{{outcome}}")],
        ),
        8,
    ),
]


def dashboard() -> dict:
    panels, x, y, height = [], 0, 0, 0
    for number, (item, width) in enumerate(LAYOUT, 1):
        item_height = 1 if item["type"] == "row" else 4 if item["type"] == "stat" else 8
        if x + width > 24 or item["type"] == "row":
            x, y = 0, y + height
            height = 0
        item["id"] = number
        item["gridPos"] = {"x": x, "y": y, "w": width, "h": item_height}
        x, height = x + width, max(height, item_height)
        if item["type"] == "row":
            x, y, height = 0, y + item_height, 0
        panels.append(item)
    return {
        "title": "pi-framework",
        "uid": "pi-framework",
        "description": "Search freshness per workspace, vectorization jobs, throughput and errors of pi-framework.",
        "tags": ["pi-framework", "plane"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


if __name__ == "__main__":
    out = Path(__file__).with_name("pi-framework.json")
    out.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {out}")
