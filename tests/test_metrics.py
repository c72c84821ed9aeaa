"""Metrics (issue 13): off and free unless asked, what each figure says, prefork hygiene, the shipped dashboard and alerts.

The real worker (``pi worker`` serving /metrics during a vectorization and a live sync) is
``test_metrics_worker.py``; task events on RabbitMQ are ``test_metrics_events.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from pi_chats import metrics as chat_metrics
from pi_docs import metrics as docs_metrics
from sqlalchemy.exc import OperationalError

from pi_framework import metrics
from pi_framework.contract.documents import Chunk, Document
from pi_framework.contract.sinks import WriteResult
from pi_framework.db import Database, DatabaseUnavailable, get_database
from pi_framework.db.breaker import CircuitBreaker
from pi_framework.db.models import JobStatus, WorkspaceVectorization, utcnow
from pi_framework.default_plugins import metrics_exporter
from pi_framework.embedding import HashingEmbedder
from pi_framework.pipeline.indexer import Indexer, IndexStats
from pi_framework.settings import Settings
from pi_framework.sinks.embedded import EmbeddedSink
from pi_framework.sync import state

pytest.importorskip("prometheus_client")
from prometheus_client import generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

ROOT = Path(__file__).parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "pi-framework.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"

Samples = dict[tuple[str, frozenset], float]


@pytest.fixture
def recording(pi_env, tmp_path, monkeypatch) -> Iterator[Settings]:
    """This process records into a folder of its own (as a worker process does after ``worker_start``)."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    settings = pi_env(PI_METRICS_DIR=str(tmp_path / "metrics"), PI_EMBEDDER="hashing")
    assert metrics.setup(settings, force=True)
    yield settings
    metrics.stop()
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from prometheus_client import values

    values.ValueClass = values.get_value_class()


def scrape(settings: Settings, **options) -> Samples:
    text = generate_latest(metrics_exporter.exporter_registry(settings, **options)).decode()
    return parse(text)


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def doc(number: int | str, body: str = "A short body about search.", **fields) -> Document:
    return Document(
        id=f"issues:{number}", source="issues", kind="issues", workspace_id="ws-1", title=f"Issue {number}", body=body, **fields
    )


class ChokingEmbedder(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__(dimension=32)

    def embed(self, texts: Sequence[str]):
        if any("BOOM" in text for text in texts):
            raise RuntimeError("model choked")
        return super().embed(texts)


class RefusingSink(EmbeddedSink):
    """Refuses the chunks of the documents named (a partial bulk failure)."""

    name = "refusing"

    def __init__(self, path: Path, refuse: set[str]) -> None:
        super().__init__(path)
        self.refuse = refuse

    def write(self, chunks: Sequence[Chunk], version: int | None = None) -> WriteResult:
        result = super().write([chunk for chunk in chunks if chunk.document_id not in self.refuse], version)
        result.failed.update({chunk.id: "mapper_parsing_exception" for chunk in chunks if chunk.document_id in self.refuse})
        return result


class PickyIndexer(Indexer):
    def chunks_of(self, document: Document) -> list[Chunk]:
        if document.id == "issues:unpreparable":
            raise ValueError("cannot chunk this")
        return super().chunks_of(document)


# ---------------------------------------------------------------------- off, and without the extra
def run_python(code: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PI_", "PROMETHEUS"))}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "PI_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_a_process_that_never_exports_records_nothing_and_never_imports_prometheus_client(tmp_path):
    code = (
        "import sys\n"
        "from pi_framework import metrics\n"
        "from pi_framework.pipeline.indexer import IndexStats\n"
        "import pi_framework.search, pi_framework.db, pi_framework.sync.trigger\n"
        "from pi_framework.settings import get_settings\n"
        "assert not metrics.setup(get_settings())\n"
        "from pi_chats.metrics import chat_messages\n"  # a plugin's declared metric: a no-op too
        "metrics.indexed(IndexStats(documents_indexed=1)); metrics.breaker_state('open'); chat_messages('indexed')\n"
        "assert metrics.sink_call('s', 'write', len, [1, 2]) == 2 and metrics.embedded(len, ['a']) == 1\n"
        "print(metrics.enabled(), 'prometheus_client' in sys.modules)\n"
    )
    result = run_python(code, {}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
    assert not (tmp_path / "data" / "metrics").exists()


@pytest.mark.slow
def test_without_the_metrics_extra_everything_is_a_noop_and_the_exporters_say_what_to_install(tmp_path):
    hide = "import sys; sys.modules['prometheus_client'] = None\n"  # as if the extra were not installed
    code = hide + (
        "from pi_framework import metrics\n"
        "from pi_framework.settings import get_settings\n"
        "print(metrics.setup(get_settings()), metrics.available())\n"
        "from pi_chats.metrics import chat_messages\n"
        "metrics.breaker_state('open'); chat_messages('parked')\n"
    )
    result = run_python(code, {"PI_METRICS_PORT": "19999"}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
    assert "pip install 'pi-framework[metrics]'" in result.stderr  # warned once

    worker = run_python(
        hide
        + "from pi_framework.default_plugins import metrics_exporter\nfrom pi_framework.settings import get_settings\nmetrics_exporter.serve_worker(get_settings())\n",
        {"PI_METRICS_PORT": "19999"},
        tmp_path,
    )
    assert worker.returncode != 0 and "pip install 'pi-framework[metrics]'" in worker.stderr
    command = run_python(
        hide + "import sys\nfrom pi_framework.cli import main\nsys.argv = ['pi', 'metrics', '--once']\nmain()\n", {}, tmp_path
    )
    assert command.returncode != 0 and "pip install 'pi-framework[metrics]'" in command.stderr


# ---------------------------------------------------------------------- pipeline and sinks
def test_the_pipeline_counts_documents_chunks_failures_by_reason_embedding_and_sink_calls(recording, tmp_path):
    sink = RefusingSink(tmp_path / "index.sqlite", refuse={"issues:refused"})
    database = Database(recording)
    indexer = PickyIndexer(sinks=[sink], embedder=ChokingEmbedder(), database=database, settings=recording)
    try:
        first = indexer.index(
            [
                doc(1),
                doc(2),
                doc("refused"),
                doc("choking", "the model chokes on BOOM"),
                doc("unpreparable"),
                Document(id="", source="issues", kind="issues", workspace_id="ws-1", body="no id"),
            ]
        )
        assert {metrics.failure_reason(reason) for reason in first.failed.values()} == set(metrics.FAILURE_REASONS)
        indexer.index([doc(1), doc(2)])  # unchanged
        indexer.index([doc(1, deleted=True)])
        samples = scrape(recording, database_state=False)
    finally:
        sink.close()
        database.dispose()
    assert value(samples, "pi_documents_total", outcome="indexed") == 2
    assert value(samples, "pi_documents_total", outcome="unchanged") == 2
    assert value(samples, "pi_documents_total", outcome="deleted") == 1
    assert value(samples, "pi_documents_total", outcome="failed") == 4
    for reason in metrics.FAILURE_REASONS:
        assert value(samples, "pi_document_failures_total", reason=reason) == 1, reason
    assert value(samples, "pi_chunks_total", action="embedded") == first.chunks_embedded > 0
    assert value(samples, "pi_embedded_texts_total") >= first.chunks_embedded
    assert value(samples, "pi_embedding_batch_size_count") >= 1
    assert value(samples, "pi_sink_refused_total", sink="refusing") == 1
    assert value(samples, "pi_sink_seconds_count", sink="refusing", operation="write") >= 1
    # the deleted document, and the refused one withdrawn from every sink (fail closed)
    assert value(samples, "pi_sink_seconds_count", sink="refusing", operation="delete_documents") == 2
    assert value(samples, "pi_sink_errors_total", sink="refusing", operation="write") is None  # no outage


def test_a_sink_outage_counts_an_error_and_still_raises(recording):
    def broken(*_):
        raise ConnectionError("index unreachable")

    with pytest.raises(ConnectionError):
        metrics.sink_call("opensearch", "search_text", broken, "query")
    samples = scrape(recording, database_state=False)
    assert value(samples, "pi_sink_errors_total", sink="opensearch", operation="search_text") == 1
    assert value(samples, "pi_sink_seconds_count", sink="opensearch", operation="search_text") == 1


# ---------------------------------------------------------------------- database
def test_breaker_state_follows_a_database_outage(recording):
    now = [0.0]
    breaker = CircuitBreaker(threshold=2, cooldown=10, clock=lambda: now[0])
    refused = OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    def unreachable():
        raise refused

    assert value(scrape(recording, database_state=False), "pi_db_breaker_state") == 0
    for _ in range(2):
        with pytest.raises(DatabaseUnavailable):
            breaker.call(unreachable)
    samples = scrape(recording, database_state=False)
    assert value(samples, "pi_db_breaker_state") == 2
    assert value(samples, "pi_db_breaker_transitions_total", state="open") == 1
    now[0] = 11  # cool-down over: the next call probes
    breaker.before()
    assert value(scrape(recording, database_state=False), "pi_db_breaker_state") == 1
    assert breaker.call(lambda: "answered") == "answered"
    samples = scrape(recording, database_state=False)
    assert value(samples, "pi_db_breaker_state") == 0
    assert value(samples, "pi_db_breaker_transitions_total", state="half_open") == 1
    assert value(samples, "pi_db_breaker_transitions_total", state="closed") == 1


def test_a_real_database_outage_opens_the_breaker_and_blinds_the_exporter(pi_env, recording):
    settings = pi_env(PI_DATABASE_URL="postgresql://pi@127.0.0.1:1/pi", PI_DB_BREAKER_THRESHOLD=2)
    for _ in range(2):
        with pytest.raises(DatabaseUnavailable):
            get_database(settings).ping()
    samples = scrape(settings)
    assert value(samples, "pi_db_breaker_state") == 2
    assert value(samples, "pi_metrics_database_up") == 0  # and no job or freshness figure pretends all is well
    assert not any(name == "pi_jobs" for name, _ in samples)


def test_pool_checkouts_are_counted(recording):
    database = Database(recording)
    try:
        with database.session() as session:
            session.connection()
            assert value(scrape(recording, database_state=False), "pi_db_pool_checked_out") == 1
        assert value(scrape(recording, database_state=False), "pi_db_pool_checked_out") == 0
    finally:
        database.dispose()


# ---------------------------------------------------------------------- what the PI database says, at scrape time
def add_job(workspace_id: str, status: str, **fields) -> None:
    with get_database().session() as session:
        session.add(WorkspaceVectorization(workspace_id=workspace_id, status=status, created_at=utcnow(), **fields))


def test_scrape_reads_jobs_freshness_and_pending_work_and_bounds_workspace_series(pi_env, recording):
    now = utcnow()
    add_job("ws-a", JobStatus.SUCCESS, live_sync_enabled=True)
    add_job("ws-b", JobStatus.SUCCESS, live_sync_enabled=True)
    add_job("ws-c", JobStatus.RUNNING, progress_done=30, progress_total=120, progress_at=now - timedelta(seconds=50))
    add_job("ws-d", JobStatus.QUEUED)
    add_job("ws-e", JobStatus.FAILED)
    state.save(state.PENDING, "ws-a", {"since": (now - timedelta(seconds=100)).isoformat(), "pending": 3, "path": "live sync"})

    samples = scrape(recording)
    assert value(samples, "pi_metrics_database_up") == 1
    assert {status: value(samples, "pi_jobs", status=status) for status in ("success", "running", "queued", "failed")} == {
        "success": 2,
        "running": 1,
        "queued": 1,
        "failed": 1,
    }
    assert value(samples, "pi_jobs_documents_done") == 30 and value(samples, "pi_jobs_documents_total") == 120
    assert value(samples, "pi_job_progress_ratio", workspace="ws-c") == 0.25
    assert 50 <= value(samples, "pi_jobs_stalled_seconds") < 80
    assert 0 <= value(samples, "pi_jobs_oldest_queued_seconds") < 30
    assert value(samples, "pi_live_sync_workspaces") == 2
    assert value(samples, "pi_pending_workspaces") == 1 and value(samples, "pi_pending_changes") == 3
    assert 100 <= value(samples, "pi_workspace_freshness_seconds", workspace="ws-a") < 130
    assert value(samples, "pi_workspace_freshness_seconds", workspace="ws-b") == 0
    assert value(samples, "pi_workspace_pending_changes", workspace="ws-a") == 3
    assert 100 <= value(samples, "pi_freshness_max_seconds") < 130
    # the gauge histogram: two workspaces, one caught up (<= 1 s), one about 100 s behind
    assert value(samples, "pi_freshness_seconds_bucket", le="1.0") == 1
    assert value(samples, "pi_freshness_seconds_bucket", le="120.0") == 2
    assert value(samples, "pi_freshness_seconds_gcount") == 2
    assert value(samples, "pi_settings_seconds", setting="CELERY_VECTOR_SYNC_INTERVAL") == recording.CELERY_VECTOR_SYNC_INTERVAL

    bounded = pi_env(PI_METRICS_MAX_WORKSPACES=1)
    samples = scrape(bounded)
    assert value(samples, "pi_metrics_per_workspace") == 0
    assert not [name for name, _ in samples if name.startswith(("pi_workspace_", "pi_job_progress_ratio"))]
    assert 100 <= value(samples, "pi_freshness_max_seconds") < 130 and value(samples, "pi_pending_changes") == 3


def test_a_workspace_catching_up_is_observed_once_and_only_if_it_was_behind(recording):
    from pi_framework.sync.live import caught_up

    state.flag("ws-a")
    state.flag("ws-b")
    assert caught_up("ws-a", state.marker("ws-a"), pending=2)  # a live sync took 2 changes
    assert caught_up("ws-b", state.marker("ws-b"), pending=0)  # flagged by the change scan, nothing pending: never behind
    assert state.marker("ws-a") is None and state.marker("ws-b") is None
    samples = scrape(recording, database_state=False)
    assert value(samples, "pi_catchup_seconds_count") == 1


# ---------------------------------------------------------------------- prefork hygiene
def test_live_gauges_of_a_process_killed_without_stopping_are_swept_and_its_counters_kept(recording, tmp_path):
    folder = metrics.directory(recording)
    code = (
        "import os\n"
        "from pi_framework import metrics\n"
        "from pi_framework.settings import get_settings\n"
        "assert metrics.setup(get_settings())\n"
        "metrics.breaker_state('open')\n"
        "metrics._metrics.pool_checked_out.inc(3)\n"
        "from pi_chats.metrics import chat_messages\n"
        "chat_messages('indexed', 5)\n"
        "print(os.getpid(), flush=True)\n"
        "os._exit(0)  # as SIGKILL: no worker_stop\n"
    )
    result = run_python(code, {"PI_METRICS_DIR": str(folder)}, tmp_path)
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout.strip())
    assert {f"gauge_livemax_{pid}.db", f"gauge_livesum_{pid}.db"} <= {file.name for file in folder.iterdir()}
    unswept = scrape(recording, database_state=False)
    assert value(unswept, "pi_db_breaker_state") == 2 and value(unswept, "pi_db_pool_checked_out") == 3

    swept = scrape(recording, database_state=False, sweep=True)
    assert value(swept, "pi_db_breaker_state") == 0 and value(swept, "pi_db_pool_checked_out") == 0
    assert value(swept, "pi_chat_messages_total", outcome="indexed") == 5  # what it counted still counts
    assert not list(folder.glob(f"gauge_live*_{pid}.db"))


def test_worker_stop_removes_the_live_gauges_of_the_stopping_process(recording):
    folder = metrics.directory(recording)
    metrics.breaker_state("open")
    assert list(folder.glob(f"gauge_livemax_{os.getpid()}.db"))
    metrics_exporter.metrics_worker_stop(recording)
    assert not list(folder.glob(f"gauge_live*_{os.getpid()}.db"))


def test_the_exporter_is_a_built_in_plugin_carrying_the_metrics_hooks(pi_registry):
    plugins = {impl.plugin_name for impl in pi_registry.pm.hook.worker_start.get_hookimpls()}
    assert "metrics_exporter" in plugins
    assert "metrics" in pi_registry.plugins["metrics_exporter"].contributes["command"]


def test_the_recorder_is_a_leaf_importing_nothing_of_the_framework_but_the_hook_marker():
    import ast

    tree = ast.parse(Path(metrics.__file__).read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert {name for name in imported if name and name.startswith("pi_framework")} <= {"pi_framework", "pi_framework.settings"}


# ---------------------------------------------------------------------- commands
def test_pi_metrics_once_prints_what_the_workers_recorded_and_the_database_state(recording):
    from pi_framework.cli import build_cli

    chat_metrics.chat_messages("rejected", 2)
    result = CliRunner().invoke(build_cli(), ["metrics", "--once"])
    assert result.exit_code == 0, result.output
    samples = parse(result.output)
    assert value(samples, "pi_chat_messages_total", outcome="rejected") == 2
    assert value(samples, "pi_jobs", status="running") == 0 and value(samples, "pi_metrics_database_up") == 1


def test_pi_status_watch_redraws_until_ctrl_c_and_through_an_outage(pi_settings, monkeypatch):
    from pi_maintenance import status as status_module

    from pi_framework.cli import build_cli

    looks = iter([RuntimeError("database down"), None, None])
    collect = status_module.collect_status

    def flaky_collect(*args, **kwargs):
        problem = next(looks)
        if problem is not None:
            raise problem
        return collect(*args, **kwargs)

    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(status_module, "collect_status", flaky_collect)
    monkeypatch.setattr(status_module.time, "sleep", sleep)
    result = CliRunner().invoke(build_cli(), ["status", "--watch", "--interval", "0.5"])
    assert result.exit_code == 0, result.output
    assert result.output.count("pi status, ") == 3 and sleeps == [0.5, 0.5, 0.5]
    assert "RuntimeError: database down" in result.output and "jobs:" in result.output


# ---------------------------------------------------------------------- the shipped dashboard and alert rules
def every_metric_exposed(settings: Settings, tmp_path: Path) -> set[str]:
    """Record through every function once, with rows in the PI database, and return the sample names exposed."""
    stats = IndexStats(documents_indexed=1, documents_unchanged=1, documents_deleted=1, documents_empty=1, chunks_embedded=2)
    stats.chunks_deleted = 1
    stats.failed = {"a": "embedding failed: x", "b": "1 of 1 chunk(s) not written: y", "c": "could not be prepared: z", "d": "?"}
    metrics.indexed(stats)
    metrics.embedded(len, ["text"])
    metrics.sink_call("embedded", "write", lambda: WriteResult(written=[], failed={"x": "refused"}))
    with pytest.raises(ConnectionError):
        metrics.sink_call("embedded", "search_text", lambda: (_ for _ in ()).throw(ConnectionError()))
    for breaker in metrics.BREAKER_STATES:
        metrics.breaker_state(breaker)
    metrics.jobs_redispatched({"requeued": 1, "resent": 1, "retried": 1, "dispatched": 1})
    metrics.jobs_reaped(1)
    metrics.caught_up({"since": utcnow().isoformat(), "pending": 1})
    docs_metrics.docs_synced("owner/repo", "synced")  # plugins' declared metrics
    docs_metrics.docs_synced("owner/repo", "failed")
    docs_metrics.github_response(200, "4999")
    chat_metrics.chat_messages("indexed")
    metrics._task_prerun(task_id="t1")  # noqa: SLF001 - the Celery signal receivers
    metrics._task_postrun(task_id="t1", task=type("T", (), {"name": "pi.celery_app.trigger_live_sync"})(), state="SUCCESS")  # noqa: SLF001
    database = Database(settings)
    try:
        with database.session() as session:
            session.connection()
    finally:
        database.dispose()
    add_job("ws-a", JobStatus.SUCCESS, live_sync_enabled=True)
    add_job("ws-b", JobStatus.RUNNING, progress_done=1, progress_total=2)
    state.save(state.PENDING, "ws-a", {"since": utcnow().isoformat(), "pending": 1, "path": "live sync"})
    return {name for name, _ in scrape(settings)}


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bpi_[a-z0-9_]+\b", expr))


def test_the_dashboard_queries_only_metrics_the_exporter_exposes(recording, tmp_path):
    exposed = every_metric_exposed(recording, tmp_path)
    dashboard = json.loads(DASHBOARD.read_text())
    targets = [target for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(targets) > 30 and len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    unknown = {name for target in targets for name in metric_names(target["expr"])} - exposed
    assert not unknown, f"the dashboard queries metrics nobody exposes: {sorted(unknown)}"
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    assert all(word in titles for word in ("freshness", "jobs", "documents / s", "errors"))
    spec = importlib.util.spec_from_file_location("make_dashboard", ROOT / "deploy" / "grafana" / "make_dashboard.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert generator.dashboard() == dashboard, "pi-framework.json is stale: python deploy/grafana/make_dashboard.py"


@pytest.mark.slow
def test_the_alert_rules_use_exposed_metrics_and_pass_promtool(recording, tmp_path):
    exposed = every_metric_exposed(recording, tmp_path)
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    names = {rule["alert"] for rule in rules}
    assert {"PiSearchNotFresh", "PiDatabaseBreakerOpen", "PiJobsStuck", "PiDocsSyncFailing"} <= names
    for rule in rules:
        assert rule["labels"]["severity"] and rule["annotations"]["summary"], rule["alert"]
        unknown = metric_names(rule["expr"]) - exposed
        assert not unknown, f"{rule['alert']} uses metrics nobody exposes: {sorted(unknown)}"
    promtool = shutil.which("promtool")
    if promtool is None:  # Debian: apt-get install prometheus
        pytest.skip("promtool not installed: the rules were checked as YAML and against the exposed metrics only")
    for command in (["check", "rules", str(ALERTS)], ["test", "rules", str(ALERT_TESTS)]):
        result = subprocess.run([promtool, *command], capture_output=True, text=True, cwd=ALERTS.parent)
        assert result.returncode == 0, result.stdout + result.stderr
    # the dashboard's queries parse too (as recording rules; Grafana's $__rate_interval as 5m)
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    check = tmp_path / "dashboard-rules.yml"
    rules = [{"record": f"pi:dashboard:{n}", "expr": expr.replace("$__rate_interval", "5m")} for n, expr in enumerate(exprs)]
    check.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(check)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------- task events: the worker's side of redaction
def test_a_chat_task_request_shows_ids_and_masks_text_in_events_logs_and_inspect(pi_settings):
    from celery.contrib.testing.mocks import TaskMessage
    from celery.utils.imports import symbol_by_name

    from pi_framework.celery_app import create_app

    app = create_app(pi_settings)
    task = app.tasks["pi.celery_app.index_chat_message"]
    Request = symbol_by_name(task.Request)
    positional = ["ws-1", "chat-1", "m-1", "u-1", "user", "my secret text", "2026-01-01T00:00:00+00:00"]
    message = TaskMessage(task.name, args=positional, kwargs={"title": "secret title", "surprise": "more text"})
    request = Request(message, app=app, task=task)
    assert request.argsrepr == "('ws-1', 'chat-1', 'm-1', 'u-1', 'user', '***', '2026-01-01T00:00:00+00:00')"
    assert request.kwargsrepr == "{'title': '***', 'surprise': '***'}"  # an argument pi does not know is masked too
    assert request.request_dict["argsrepr"] == request.argsrepr  # what the pool process logs with
    assert "secret" not in repr(request.info()) and "secret" not in repr(request)
    assert request.args[5] == "my secret text"  # the task itself gets its arguments
    other = app.tasks["pi.celery_app.trigger_live_sync"]
    assert other.Request == "celery.worker.request:Request"  # tasks without text keep Celery's request


def test_serving_from_a_recording_process_keeps_one_value_class(recording):
    """``pi worker`` records and serves in one process: a second value class would map the same files twice."""
    from prometheus_client import values

    before = values.ValueClass
    metrics_exporter.exporter_registry(recording)
    metrics_exporter.exporter_registry(recording, sweep=True)
    assert values.ValueClass is before
    for number in range(40):  # new children after the registry was built land in the same files, intact
        metrics._metrics.tasks.labels(f"task-{number}", "SUCCESS").inc()  # noqa: SLF001
    samples = scrape(recording, database_state=False)
    assert all(value(samples, "pi_tasks_total", task=f"task-{n}", state="SUCCESS") == 1 for n in range(40))
