"""The public API of pi-framework: everything a plugin imports, from one module.

::

    from pi_framework.api import BaseSource, Changes, Document, hookimpl

    class TicketsSource(BaseSource):
        name = kind = "tickets"
        ...

    @hookimpl
    def register_sources(register, settings):
        register(TicketsSource())

What is here is the contract: these names keep their meaning across versions, while the modules behind them may
move. The plugins of this repository import nothing else of ``pi_framework`` (``tests/test_public_api.py``
enforces it); their tests may also use :mod:`pi_framework.testing`. Every name is listed below with what it is
(a test fails when a name is exported without a line here). The contract's own types live in
:mod:`pi_framework.contract` and are loaded with this module; the core's services are imported on first use, so a
plugin's ``import`` costs nothing.

**The plugin contract** (:mod:`pi_framework.contract`)

* ``hookimpl``: the decorator of a plugin's hook implementations (the hooks: :mod:`pi_framework.hookspecs`)
* ``Source``: the protocol of a content source (every method the core calls)
* ``BaseSource``: a base class giving a source its defaults (``visible_versions``, ``changed_workspaces``)
* ``Changes``: what changed since a cursor: lazy ``documents`` and the ``cursor()`` to store once they are indexed
* ``Sink``: the protocol of an index (write, versioned deletes, read back, search, health)
* ``SinkFactory``: ``factory(settings) -> Sink``, what ``register_sinks`` registers
* ``Embedder``: the protocol of an embedding model
* ``EmbedderFactory``: ``factory(settings) -> Embedder``, what ``register_embedders`` registers
* ``TaskSpec``: a Celery task a plugin provides (``register_tasks``)
* ``TASK_PREFIX``: the prefix of every task name (``pi.celery_app.``)
* ``PeriodicJob``: a beat entry (``register_periodic_jobs``)
* ``HealthCheck``: a named check run by ``pi health`` (``register_health_checks``)
* ``Document``: one piece of content as a source yields it (ids unique across workspaces: ``<source>:<id>``)
* ``BodyFormat``: ``"text"``, ``"html"`` or ``"markdown"``: how a document's body is normalised
* ``Chunk``: one indexed window of a document, as a sink stores it
* ``chunk_id``: the id of a document's n-th chunk (``<document id>#<n>``)
* ``SearchQuery``: a query against one sink, always filtered by workspace, privacy and projects
* ``Hit``: one search result
* ``CREATED_BY``: the metadata key holding the user Plane's guest rule compares with
* ``Filters``: Plane's filters (state, state group, priority, labels, assignees, project) a search carries
* ``FILTER_KEYS``: the metadata keys sinks index for :class:`Filters` (a source sets those it has)
* ``WriteResult``: the outcome of a sink write: ids written, reason per id refused
* ``SinkError``: a sink could not do what was asked
* ``Settings``: every setting, as the pydantic model read from the environment
* ``SettingsError``: a setting is invalid (one plain line, no traceback)
* ``get_settings``: this process's settings
* ``PluginSettings``: the base of a plugin's own settings model (``register_settings``), read from the environment
* ``split_csv``: a comma-separated variable as a list (a ``PluginSettings`` list field's ``mode="before"`` validator)

**The core's services** (imported on first use)

* ``get_registry``: the process's plugin registry (sources, sinks, tasks, jobs, checks, plugins and failures)
* ``plugin_settings``: ``plugin_settings(Model)``, this process's instance of a model registered with ``register_settings``
* ``get_sinks``: the configured sinks, built once per process
* ``get_embedder``: the configured embedder, built once per process
* ``Database``: the PI database (engine, sessions, circuit breaker)
* ``DatabaseUnavailable``: the PI database cannot be reached (the breaker is open)
* ``get_database``: this process's PI database
* ``PluginTable``: the declarative base of a plugin's own tables in the PI database (created and upgraded with the
  core's, which are not reachable through it; a plugin reads the core's state through the names below, never its tables)
* ``utcnow``: the aware UTC "now" the PI database's rows use
* ``JobStatus``: the statuses of a vectorization job
* ``PluginState``: a plugin's own JSON rows by scope in ``sync_states``: ``PluginState("<plugin>")`` (``plugin:<plugin>``),
  or ``PluginState.reserved(name)`` for a name the plugin reserved with ``register_state_names`` (``load``, ``save``,
  ``remove``, ``all``, ``rows``, and ``update`` read-modify-write in one transaction)
* ``Indexer``: documents in, chunks embedded and written to every sink, the ledger updated (push and global sources)
* ``IndexStats``: what one ``Indexer.index`` call did
* ``SinkOutage``: a sink failed as a whole during indexing (retry the run)
* ``Ledger``: ``Ledger(database)`` (also ``Indexer.ledger``), what every sink confirmed: read it (``lookup``,
  ``document_ids``, ``find_ids``, ``records``, ``count``, ``workspaces_with_documents``), change it only with
  ``apply(LedgerUpdate)`` once the sinks confirmed
* ``LedgerRecord``: one recorded document as ``Ledger.records`` returns it (id, workspace, source, kind, version, chunks)
* ``LedgerUpdate``: one group of ledger changes, applied in one transaction
* ``to_str``: any value as valid text (bytes decoded, lone surrogates replaced)
* ``search``: hybrid search of one workspace, filtered by what the user may see
* ``vectorize``: run a workspace's vectorization job in this process
* ``live_sync``: apply a workspace's pending changes in this process
* ``jobs``: this process's ``Jobs`` (vectorization jobs: request, cancel, ...)
* ``Jobs``: the vectorization jobs and their compare-and-set transitions
* ``job_counts``: how many vectorization jobs have each status
* ``workspace_jobs``: per workspace with jobs: its latest job (``JobView``), counts by status, live sync, activity
* ``silent_jobs``: how many queued or running jobs made no progress since a time
* ``oldest_active_progress``: the earliest last progress of a queued or running job
* ``forget_workspace``: remove a workspace from every sink and the ledger (its plan left vectorization)
* ``stuck_workspaces``: workspaces with pending work older than a threshold, and why
* ``source_errors``: the installed workspace sources that raised at run time (skipped while the others sync), and why
* ``changefeed_status``: ``slot -> status`` of the change feed (on or polling and why, slot lag), what ``pi changefeed
  status`` shows
* ``index_generations``: every index generation not dropped (live, being built for a model change, replaced), with
  its model and copy progress, what ``pi generations`` shows
* ``write_sinks``: what a writer writes to (the live index generation's sinks, and mirrors into one being built); a
  plugin that rewrites stored chunks itself uses it, so a model change in progress gets them too
* ``run_health_checks``: run every registered health check
* ``metrics``: the metrics recorder (no-ops unless the process records); a plugin declares metrics of its own with
  ``metrics.counter``, ``metrics.gauge`` and ``metrics.histogram``
* ``redact_task_arguments``: task options keeping arguments' text out of Celery task events

**Plane** (read only)

* ``PlaneSource``: the base of a workspace source read from Plane's database (``tracked`` tables, cursors)
* ``Marks``: a source's per-table watermarks in a cursor
* ``Observed``: the rows a scan observed, to move the watermarks by
* ``chunked``: an iterable in lists of at most n items
* ``plane_engine``: the engine of Plane's database (``PLANE_DATABASE_URL``)
* ``plane_schema``: Plane's tables (``plane_schema.issues``, ...) and column types (``UUID``, ``UTCDateTime``, ...)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pi_framework import hookimpl
from pi_framework.contract.contributions import (
    TASK_PREFIX,
    BaseSource,
    Changes,
    Embedder,
    EmbedderFactory,
    HealthCheck,
    PeriodicJob,
    SinkFactory,
    Source,
    TaskSpec,
)
from pi_framework.contract.documents import BodyFormat, Chunk, Document, chunk_id
from pi_framework.contract.sinks import CREATED_BY, FILTER_KEYS, Filters, Hit, SearchQuery, Sink, SinkError, WriteResult
from pi_framework.settings import PluginSettings, Settings, SettingsError, get_settings, split_csv

if TYPE_CHECKING:
    from pi_framework import metrics
    from pi_framework.changefeed.requests import load_status as changefeed_status
    from pi_framework.db import Database, DatabaseUnavailable, get_database
    from pi_framework.db.models import JobStatus, PluginTable, utcnow
    from pi_framework.events import redacting as redact_task_arguments
    from pi_framework.health import run_health_checks
    from pi_framework.pipeline.indexer import Indexer, IndexStats, SinkOutage
    from pi_framework.pipeline.ledger import Ledger, LedgerRecord, LedgerUpdate
    from pi_framework.pipeline.normalise import to_str
    from pi_framework.plane import schema as plane_schema
    from pi_framework.plane.db import plane_engine
    from pi_framework.plane.source import Marks, Observed, PlaneSource, chunked
    from pi_framework.runtime import get_embedder, get_registry, get_sinks, plugin_settings, write_sinks
    from pi_framework.search import search
    from pi_framework.sync import current_jobs as jobs
    from pi_framework.sync.downgrade import forget_workspace
    from pi_framework.sync.generations import status as index_generations
    from pi_framework.sync.isolation import source_errors
    from pi_framework.sync.job_reads import job_counts, oldest_active_progress, silent_jobs, workspace_jobs
    from pi_framework.sync.jobs import Jobs
    from pi_framework.sync.live import live_sync
    from pi_framework.sync.state import PluginState
    from pi_framework.sync.trigger import stuck_workspaces
    from pi_framework.sync.vectorize import vectorize

#: name -> ``module`` (the module itself) or ``module:attribute``, imported on first use
_LAZY = {
    # the process-wide objects built from settings and plugins
    "get_registry": "pi_framework.runtime:get_registry",
    "plugin_settings": "pi_framework.runtime:plugin_settings",
    "get_sinks": "pi_framework.runtime:get_sinks",
    "get_embedder": "pi_framework.runtime:get_embedder",
    # the PI database: engine and sessions; a plugin's own tables and state rows (the core's are read through functions)
    "Database": "pi_framework.db:Database",
    "DatabaseUnavailable": "pi_framework.db:DatabaseUnavailable",
    "get_database": "pi_framework.db:get_database",
    "PluginTable": "pi_framework.db.models:PluginTable",
    "utcnow": "pi_framework.db.models:utcnow",
    "JobStatus": "pi_framework.db.models:JobStatus",
    "PluginState": "pi_framework.sync.state:PluginState",
    # indexing documents a plugin brings itself (push and global sources)
    "Indexer": "pi_framework.pipeline.indexer:Indexer",
    "IndexStats": "pi_framework.pipeline.indexer:IndexStats",
    "SinkOutage": "pi_framework.pipeline.indexer:SinkOutage",
    "Ledger": "pi_framework.pipeline.ledger:Ledger",
    "LedgerRecord": "pi_framework.pipeline.ledger:LedgerRecord",
    "LedgerUpdate": "pi_framework.pipeline.ledger:LedgerUpdate",
    "to_str": "pi_framework.pipeline.normalise:to_str",
    # the framework's verbs, run in this process (plugins' commands and tests)
    "search": "pi_framework.search:search",
    "vectorize": "pi_framework.sync.vectorize:vectorize",
    "live_sync": "pi_framework.sync.live:live_sync",
    # vectorization jobs and workspaces
    "jobs": "pi_framework.sync:current_jobs",
    "Jobs": "pi_framework.sync.jobs:Jobs",
    "job_counts": "pi_framework.sync.job_reads:job_counts",
    "workspace_jobs": "pi_framework.sync.job_reads:workspace_jobs",
    "silent_jobs": "pi_framework.sync.job_reads:silent_jobs",
    "oldest_active_progress": "pi_framework.sync.job_reads:oldest_active_progress",
    "forget_workspace": "pi_framework.sync.downgrade:forget_workspace",
    "stuck_workspaces": "pi_framework.sync.trigger:stuck_workspaces",
    "source_errors": "pi_framework.sync.isolation:source_errors",
    "changefeed_status": "pi_framework.changefeed.requests:load_status",
    "index_generations": "pi_framework.sync.generations:status",
    "write_sinks": "pi_framework.runtime:write_sinks",
    "run_health_checks": "pi_framework.health:run_health_checks",
    # operators' eyes: metrics (no-ops unless the process records) and task options keeping text out of task events
    "metrics": "pi_framework.metrics",
    "redact_task_arguments": "pi_framework.events:redacting",
    # Plane's database (read only)
    "PlaneSource": "pi_framework.plane.source:PlaneSource",
    "Marks": "pi_framework.plane.source:Marks",
    "Observed": "pi_framework.plane.source:Observed",
    "chunked": "pi_framework.plane.source:chunked",
    "plane_engine": "pi_framework.plane.db:plane_engine",
    "plane_schema": "pi_framework.plane.schema",
}

__all__ = [
    # the plugin contract
    "hookimpl",
    "Source",
    "BaseSource",
    "Sink",
    "Embedder",
    "SinkFactory",
    "EmbedderFactory",
    "TaskSpec",
    "TASK_PREFIX",
    "PeriodicJob",
    "HealthCheck",
    "Changes",
    "Document",
    "BodyFormat",
    "Chunk",
    "chunk_id",
    "SearchQuery",
    "Hit",
    "CREATED_BY",
    "Filters",
    "FILTER_KEYS",
    "WriteResult",
    "SinkError",
    "Settings",
    "SettingsError",
    "get_settings",
    "PluginSettings",
    "split_csv",
    # the core's services and Plane, imported on first use (:data:`_LAZY`)
    "get_registry",
    "plugin_settings",
    "get_sinks",
    "get_embedder",
    "Database",
    "DatabaseUnavailable",
    "get_database",
    "PluginTable",
    "utcnow",
    "JobStatus",
    "PluginState",
    "Indexer",
    "IndexStats",
    "SinkOutage",
    "Ledger",
    "LedgerRecord",
    "LedgerUpdate",
    "to_str",
    "search",
    "vectorize",
    "live_sync",
    "jobs",
    "Jobs",
    "job_counts",
    "workspace_jobs",
    "silent_jobs",
    "oldest_active_progress",
    "forget_workspace",
    "stuck_workspaces",
    "source_errors",
    "changefeed_status",
    "index_generations",
    "write_sinks",
    "run_health_checks",
    "metrics",
    "redact_task_arguments",
    "PlaneSource",
    "Marks",
    "Observed",
    "chunked",
    "plane_engine",
    "plane_schema",
]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attribute) if attribute else module
    globals()[name] = value  # the next lookup does not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
