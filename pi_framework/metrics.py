"""Prometheus metrics, the recorder: every definition and the small functions the code calls (a leaf: it imports
nothing of the framework but the hook marker; the exporter, its scrape-time collector and ``pi metrics`` are the
built-in plugin :mod:`pi_framework.default_plugins.metrics_exporter`).

**Off unless asked.** A process records only after :func:`setup`, which worker processes run (hook
``worker_start``) when ``PI_METRICS_PORT`` or ``PI_METRICS_DIR`` is set and ``prometheus_client`` is installed
(extra ``metrics``). Until then every recording function returns at its first line, so a worker that never
exports pays one global lookup per call (a few per group of documents), and nothing imports
``prometheus_client``.

**Prefork.** Celery's pool runs tasks in child processes, so values live in prometheus_client's
*multiprocess mode*: each process writes its own memory-mapped files under ``PI_METRICS_DIR`` (default
``PI_DATA_DIR/metrics``), and the exporter sums them at scrape time. A process that stops cleanly removes its
live gauges (``multiprocess.mark_process_dead``, hook ``worker_stop``); ``pi worker``'s exporter also sweeps
those of processes that died without stopping (``kill -9``). Counters of dead processes stay (they keep counting
for the machine), so a restart never makes a counter go back.

**Two sources.** Worker processes count what happens (documents, chunks, embedding, sink calls, sources that raised,
tasks, breaker; plugins declare metrics of their own with :func:`counter`, :func:`gauge` and :func:`histogram`: the
docs plugin its syncs and GitHub answers, the chats plugin its messages). What *is* (jobs by status, pending work and freshness per workspace) is read from the PI
database by the exporter at scrape time (``metrics_exporter.StateCollector``, a handful of queries), never on a hot
path.

**Bounded labels.** No label holds a document id. ``workspace`` labels appear only while at most
``PI_METRICS_MAX_WORKSPACES`` workspaces are live-synced (aggregates always); ``repo`` labels are the configured
repositories; ``task`` labels the registered tasks; ``sink`` the configured sinks.

The exporter is served by ``pi worker`` (``PI_METRICS_PORT``) or, next to a plain ``celery worker``, by
``pi metrics``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from loguru import logger

if TYPE_CHECKING:

    from pi_framework.settings import Settings

T = TypeVar("T")

#: the buckets of every duration measured in seconds of waiting for data to be searchable
FRESHNESS_BUCKETS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 10800, 43200, 86400)
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
#: what a document failure is, from the reason the indexer gives (``IndexStats.failed``)
FAILURE_REASONS = ("embedding", "sink_refused", "invalid", "prepare")
DEFAULT_EXPORTER_PORT = 9808


class MetricsUnavailable(RuntimeError):
    """The endpoint cannot be served (port taken)."""


class _Metrics:
    """The metric objects of this process (created by :func:`setup`, after ``PROMETHEUS_MULTIPROC_DIR`` is set)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Any:
            return Counter(name, doc, list(labels), registry=None)

        def histogram(name: str, doc: str, buckets: Iterable[float], labels: Iterable[str] = ()) -> Any:
            return Histogram(name, doc, list(labels), buckets=tuple(buckets), registry=None)

        def gauge(name: str, doc: str, mode: str, labels: Iterable[str] = ()) -> Any:
            return Gauge(name, doc, list(labels), multiprocess_mode=mode, registry=None)

        # pipeline
        documents = counter("pi_documents_total", "Documents through the pipeline, by outcome.", ["outcome"])
        self.documents = {o: documents.labels(o) for o in ("indexed", "unchanged", "deleted", "empty", "failed")}
        chunks = counter("pi_chunks_total", "Chunks embedded and written, or deleted from the sinks.", ["action"])
        self.chunks = {a: chunks.labels(a) for a in ("embedded", "deleted")}
        failures = counter("pi_document_failures_total", "Documents the pipeline could not index, by reason.", ["reason"])
        self.failures = {r: failures.labels(r) for r in FAILURE_REASONS}
        self.embedded_texts = counter("pi_embedded_texts_total", "Texts embedded.")
        self.embedding_seconds = histogram(
            "pi_embedding_seconds", "Seconds per embedding call.", (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
        )
        self.batch_size = histogram(
            "pi_embedding_batch_size", "Texts per embedding call.", (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
        )
        # sinks
        self.sink_seconds = histogram(
            "pi_sink_seconds",
            "Seconds per sink call (write, delete_*, search_*).",
            (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            ["sink", "operation"],
        )
        self.sink_errors = counter("pi_sink_errors_total", "Sink calls that raised (an outage).", ["sink", "operation"])
        self.sink_refused = counter("pi_sink_refused_total", "Items a sink refused in a write.", ["sink"])
        # sources
        self.source_errors = counter(
            "pi_source_errors_total",
            "Times a source raised at run time and was skipped for the round, by stage (tick, live_sync, reconcile).",
            ["source", "stage"],
        )
        # database
        self.breaker_state = gauge(
            "pi_db_breaker_state", "PI database circuit breaker: 0 closed, 1 half-open, 2 open.", "livemax"
        )
        self.breaker_transitions = counter("pi_db_breaker_transitions_total", "Breaker transitions, by new state.", ["state"])
        self.pool_checked_out = gauge("pi_db_pool_checked_out", "PI database connections checked out of the pools.", "livesum")
        # jobs and sync
        self.redispatched = counter(
            "pi_jobs_redispatched_total", "Jobs re-queued, re-sent, retried or dispatched by the re-dispatch pass.", ["action"]
        )
        self.reaped = counter("pi_jobs_reaped_total", "Jobs the stuck-job reaper failed.")
        self.catchup = histogram(
            "pi_catchup_seconds", "Seconds a workspace had pending work until it was caught up.", FRESHNESS_BUCKETS
        )
        # tasks
        self.tasks = counter("pi_tasks_total", "Tasks run, by name and final state.", ["task", "state"])
        self.task_seconds = histogram(
            "pi_task_seconds",
            "Seconds per task run.",
            (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600, 7200),
            ["task"],
        )
        self.task_last_success = gauge(
            "pi_task_last_success_timestamp_seconds", "When each task last succeeded (Unix time).", "max", ["task"]
        )


_metrics: _Metrics | None = None
#: the folder prometheus_client's value class writes to in this process
_prepared: Path | None = None
_lock = threading.Lock()
_warned: set[str] = set()


def warn_once(key: str, message: str, *args: Any) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


# ---------------------------------------------------------------------- metrics a plugin declares
class Metric:
    """A metric a plugin declares with :func:`counter`, :func:`gauge` or :func:`histogram` (at import, like
    prometheus_client's own): a no-op until the process records (:func:`setup`), then created in that process on first
    use. ``inc``/``set``/``observe`` take the label values as keywords."""

    def __init__(self, kind: str, name: str, doc: str, labels: Iterable[str], **options: Any) -> None:
        self.kind, self.name, self.doc, self.labels, self.options = kind, name, doc, tuple(labels), options
        self._made: tuple[_Metrics, Any] | None = None

    def _object(self) -> Any:
        m = _metrics
        if m is None:
            return None
        if self._made is None or self._made[0] is not m:  # recording (re)started: new objects, as _Metrics makes
            import prometheus_client

            make = {"counter": prometheus_client.Counter, "gauge": prometheus_client.Gauge, "histogram": prometheus_client.Histogram}
            self._made = (m, make[self.kind](self.name, self.doc, list(self.labels), registry=None, **self.options))
        return self._made[1]

    def _child(self, labels: dict[str, str]) -> Any:
        made = self._object()
        if made is None:
            return None
        return made.labels(**labels) if labels else made

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if (child := self._child(labels)) is not None and amount:
            child.inc(amount)

    def set(self, value: float, **labels: str) -> None:
        if (child := self._child(labels)) is not None:
            child.set(value)

    def observe(self, value: float, **labels: str) -> None:
        if (child := self._child(labels)) is not None:
            child.observe(value)


#: every metric plugins declared, by name (a name declared twice with another definition is refused)
declared: dict[str, Metric] = {}


def _declare(metric: Metric) -> Metric:
    existing = declared.get(metric.name)
    if existing is not None and (existing.kind, existing.labels, existing.options) != (metric.kind, metric.labels, metric.options):
        raise ValueError(f"metric {metric.name} is declared twice with different definitions")
    declared[metric.name] = metric
    return metric


def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Metric:
    """Declare a counter of a plugin's own (``pi_<plugin>_…_total``)."""
    return _declare(Metric("counter", name, doc, labels))


def gauge(name: str, doc: str, labels: Iterable[str] = (), mode: str = "mostrecent") -> Metric:
    """Declare a gauge; *mode* is prometheus_client's multiprocess mode (``mostrecent``, ``max``, ``livesum``, …)."""
    return _declare(Metric("gauge", name, doc, labels, multiprocess_mode=mode))


def histogram(name: str, doc: str, buckets: Iterable[float], labels: Iterable[str] = ()) -> Metric:
    """Declare a histogram with *buckets*."""
    return _declare(Metric("histogram", name, doc, labels, buckets=tuple(buckets)))


# ---------------------------------------------------------------------- switching on
def wanted(settings: Settings) -> bool:
    """Whether worker processes record metrics (``PI_METRICS_PORT`` or ``PI_METRICS_DIR`` set)."""
    return settings.PI_METRICS_PORT is not None or settings.PI_METRICS_DIR is not None


def available() -> bool:
    """Whether ``prometheus_client`` (the ``metrics`` extra) is installed."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


def directory(settings: Settings) -> Path:
    """The multiprocess folder shared by a machine's worker processes and its exporter."""
    return (settings.PI_METRICS_DIR or settings.data_dir / "metrics").resolve()


def prepare(settings: Settings) -> Path:
    """Create the folder and point prometheus_client's multiprocess mode at it, in this process and its children."""
    global _prepared
    path = directory(settings)
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    from prometheus_client import values

    # prometheus_client picks its value class when first imported: pick again now that the variable is set, but only
    # once per folder (two value classes would map the same per-process file twice and overwrite each other's entries)
    if _prepared != path or not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.get_value_class()
        _prepared = path
    return path


def enabled() -> bool:
    return _metrics is not None


def setup(settings: Settings | None = None, *, force: bool = False) -> bool:
    """Start recording in this process if the settings ask for it; ``True`` when recording.

    Idempotent; a forked child keeps its parent's metric objects (prometheus_client notices the new pid and
    writes files of its own). ``force`` records whatever the settings say (tests, benchmarks).
    """
    global _metrics
    from pi_framework.settings import get_settings

    settings = settings or get_settings()
    if not (force or wanted(settings)):
        return False
    if not available():
        warn_once("missing", "PI_METRICS_PORT/PI_METRICS_DIR is set but prometheus_client is not installed: "
                    "pip install 'pi-framework[metrics]'; no metrics are recorded")  # fmt: skip
        return False
    with _lock:
        if _metrics is not None and not force:
            return True
        prepare(settings)
        _metrics = _Metrics()
        _metrics.breaker_state.set(0)
        _connect_task_signals()
    return True


def stop() -> None:
    """Stop recording in this process (tests); the files stay."""
    global _metrics
    with _lock:
        _metrics = None


def process_stopped(settings: Settings) -> None:
    """This process stops: remove its live gauges (pool connections, breaker state) from the folder."""
    if _metrics is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(os.getpid(), str(directory(settings)))


def sweep_dead(path: Path) -> list[int]:
    """Remove the live gauges of processes that are gone (killed without stopping); returns their pids.

    Only meaningful where this process sees the workers' pids (same host and PID namespace).
    """
    from prometheus_client import multiprocess

    dead = []
    for file in path.glob("gauge_live*_*.db"):
        try:
            pid = int(file.stem.rsplit("_", 1)[1])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid) and pid not in dead:
            dead.append(pid)
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(path))
    return dead


def _alive(pid: int) -> bool:
    """Whether *pid* runs: a zombie (killed, never reaped — PID 1 of a container may not reap) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


# ---------------------------------------------------------------------- pipeline and sinks
_COUNTED = (
    ("documents_indexed", "indexed"),
    ("documents_unchanged", "unchanged"),
    ("documents_deleted", "deleted"),
    ("documents_empty", "empty"),
)


def failure_reason(reason: str) -> str:
    """The bounded class of a reason the indexer gives for not indexing a document."""
    if reason.startswith("embedding failed"):
        return "embedding"
    if " not written: " in reason or "did not confirm" in reason:
        return "sink_refused"
    if reason.startswith("could not be prepared"):
        return "prepare"
    return "invalid"


def indexed(stats: Any) -> None:
    """Count what an ``IndexStats`` gained since its last call (the indexer calls this after each group and at the end)."""
    m = _metrics
    if m is None:
        return
    try:
        seen = vars(stats).setdefault("_metrics_seen", {})
        for field, outcome in _COUNTED:
            value = getattr(stats, field)
            if value > seen.get(field, 0):
                m.documents[outcome].inc(value - seen.get(field, 0))
                seen[field] = value
        for field, action in (("chunks_embedded", "embedded"), ("chunks_deleted", "deleted")):
            value = getattr(stats, field)
            if value > seen.get(field, 0):
                m.chunks[action].inc(value - seen.get(field, 0))
                seen[field] = value
        reasons = list(stats.failed.values())
        for reason in reasons[seen.get("failed", 0) :]:
            m.failures[failure_reason(reason)].inc()
            m.documents["failed"].inc()
        seen["failed"] = max(len(reasons), seen.get("failed", 0))
    except Exception as exc:  # noqa: BLE001 - metrics never break indexing
        warn_once("indexed", "metrics: could not count index stats: {}: {}", type(exc).__name__, exc)


def embedded(embed: Callable[[list[str]], T], texts: list[str]) -> T:
    """``embed(texts)``, timed and counted."""
    m = _metrics
    if m is None:
        return embed(texts)
    started = time.perf_counter()
    result = embed(texts)
    m.embedding_seconds.observe(time.perf_counter() - started)
    m.embedded_texts.inc(len(texts))
    m.batch_size.observe(len(texts))
    return result


def sink_call(sink: str, operation: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call(*args, **kwargs)`` on a sink, timed; an exception counts as an error (and is raised); refused items are counted."""
    m = _metrics
    if m is None:
        return call(*args, **kwargs)
    started = time.perf_counter()
    try:
        result = call(*args, **kwargs)
    except Exception:
        m.sink_errors.labels(sink, operation).inc()
        raise
    finally:
        m.sink_seconds.labels(sink, operation).observe(time.perf_counter() - started)
    refused = getattr(result, "failed", None)
    if refused:
        m.sink_refused.labels(sink).inc(len(refused))
    return result


def source_error(source: str, stage: str) -> None:
    """*source* raised in *stage* (``tick``, ``live_sync``, ``reconcile``) and was skipped for that round."""
    m = _metrics
    if m is not None:
        m.source_errors.labels(source, stage).inc()


# ---------------------------------------------------------------------- database
def breaker_state(state: str) -> None:
    """The breaker of this process moved to *state* (``closed``, ``half_open``, ``open``)."""
    m = _metrics
    if m is None:
        return
    m.breaker_state.set(BREAKER_STATES.get(state, 2))
    m.breaker_transitions.labels(state).inc()


def watch_pool(engine: Any) -> None:
    """Count the connections *engine*'s pool has checked out (PI database)."""
    m = _metrics
    if m is None:
        return
    from sqlalchemy import event

    gauge = m.pool_checked_out
    event.listen(engine, "checkout", lambda *_: gauge.inc())
    event.listen(engine, "checkin", lambda *_: gauge.dec())


# ---------------------------------------------------------------------- jobs and sync
def jobs_redispatched(counts: dict[str, int]) -> None:
    m = _metrics
    if m is None:
        return
    for action, value in counts.items():
        if value:
            m.redispatched.labels(action).inc(value)


def jobs_reaped(count: int) -> None:
    m = _metrics
    if m is not None and count:
        m.reaped.inc(count)


def caught_up(marker: dict[str, Any]) -> None:
    """A workspace's pending-work marker went: what it counted is searchable now.

    Only a marker that measured pending changes counts (a workspace flagged by the change scan and found with
    nothing pending was never behind).
    """
    m = _metrics
    if m is None or not marker.get("pending") or not marker.get("since"):
        return
    try:
        m.catchup.observe(max(0.0, time.time() - _timestamp(marker["since"])))
    except (TypeError, ValueError):
        pass


def _timestamp(iso: str) -> float:
    moment = datetime.fromisoformat(iso)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


# ---------------------------------------------------------------------- tasks (Celery signals, connected by setup)
_task_started: dict[str, float] = {}


def _connect_task_signals() -> None:
    from celery import signals

    signals.task_prerun.connect(_task_prerun, weak=False, dispatch_uid="pi_framework.metrics.prerun")
    signals.task_postrun.connect(_task_postrun, weak=False, dispatch_uid="pi_framework.metrics.postrun")


def _task_prerun(task_id: str | None = None, **_: Any) -> None:
    if task_id is not None and _metrics is not None:
        _task_started[task_id] = time.perf_counter()


def _task_postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    m = _metrics
    started = _task_started.pop(task_id, None) if task_id is not None else None
    if m is None or task is None:
        return
    name = getattr(task, "name", None) or "unknown"
    m.tasks.labels(name, state or "UNKNOWN").inc()
    if started is not None:
        m.task_seconds.labels(name).observe(time.perf_counter() - started)
    if state == "SUCCESS":
        m.task_last_success.labels(name).set(time.time())
