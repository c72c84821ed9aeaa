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
enforces it); their tests may also use :mod:`pi_framework.testing`.

* **The plugin contract** (cheap to import, loaded with this module): ``hookimpl``; the protocols ``Source``,
  ``Sink`` and ``Embedder`` (every method the core calls; ``BaseSource`` gives a source its one default); the
  contributions ``TaskSpec``, ``PeriodicJob``, ``HealthCheck``, ``Changes``; the data types ``Document``,
  ``Chunk``, ``SearchQuery``, ``Hit``, ``WriteResult``; ``SinkError``; ``Settings`` and ``get_settings``.
* **The core's services** (imported on first use, so a plugin's ``import`` costs nothing): the process-wide
  registry, sinks and embedder (``get_registry``, ``get_sinks``, ``get_embedder``); the PI database
  (``get_database``, ``Database``, its tables, ``PluginState`` for a plugin's own rows); the ``Indexer``; jobs
  (``jobs()``, ``Jobs``, ``JobStatus``) and ``forget_workspace``; health checks and stuck workspaces; the framework's
  verbs run in this process (``vectorize``, ``live_sync``, ``search``), for a plugin's commands and tests.
* **Plane** (read only): ``PlaneSource``, the base of a workspace source read from Plane's database, whose
  ``tracked`` tables may be the plugin's own ``Table`` objects; ``plane_engine``; ``plane_schema``, the module
  of Plane's tables (``plane_schema.issues``, …) and column types (``UUID``, ``UTCDateTime``, ``PlainDate``,
  ``JSONDOC``) to declare more tables with.
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
from pi_framework.contract.sinks import CREATED_BY, Hit, SearchQuery, Sink, SinkError, WriteResult
from pi_framework.settings import Settings, SettingsError, get_settings

if TYPE_CHECKING:
    from pi_framework import metrics
    from pi_framework.db import Database, DatabaseUnavailable, get_database
    from pi_framework.db.models import Base as ModelBase
    from pi_framework.db.models import IndexedDocument, JobStatus, SyncState, WorkspaceVectorization, utcnow
    from pi_framework.events import redacting as redact_task_arguments
    from pi_framework.health import run_health_checks
    from pi_framework.pipeline.indexer import Indexer, IndexStats, SinkOutage
    from pi_framework.pipeline.ledger import LedgerUpdate
    from pi_framework.pipeline.normalise import to_str
    from pi_framework.plane import schema as plane_schema
    from pi_framework.plane.db import plane_engine
    from pi_framework.plane.source import Marks, Observed, PlaneSource, chunked
    from pi_framework.runtime import get_embedder, get_registry, get_sinks
    from pi_framework.search import search
    from pi_framework.sinks.embedded import EmbeddedSink
    from pi_framework.sinks.opensearch.queries import index_name as opensearch_index_name
    from pi_framework.sinks.opensearch.sink import OpenSearchSink
    from pi_framework.sync import jobs
    from pi_framework.sync.downgrade import forget_workspace
    from pi_framework.sync.jobs import Jobs
    from pi_framework.sync.live import live_sync
    from pi_framework.sync.state import PluginState
    from pi_framework.sync.trigger import stuck_workspaces
    from pi_framework.sync.vectorize import vectorize

#: name -> ``module`` (the module itself) or ``module:attribute``, imported on first use
_LAZY = {
    # the process-wide objects built from settings and plugins
    "get_registry": "pi_framework.runtime:get_registry",
    "get_sinks": "pi_framework.runtime:get_sinks",
    "get_embedder": "pi_framework.runtime:get_embedder",
    # the PI database: engine and sessions, its tables (read them; write only rows of your own)
    "Database": "pi_framework.db:Database",
    "DatabaseUnavailable": "pi_framework.db:DatabaseUnavailable",
    "get_database": "pi_framework.db:get_database",
    "ModelBase": "pi_framework.db.models:Base",
    "utcnow": "pi_framework.db.models:utcnow",
    "JobStatus": "pi_framework.db.models:JobStatus",
    "SyncState": "pi_framework.db.models:SyncState",
    "IndexedDocument": "pi_framework.db.models:IndexedDocument",
    "WorkspaceVectorization": "pi_framework.db.models:WorkspaceVectorization",
    "PluginState": "pi_framework.sync.state:PluginState",
    # indexing documents a plugin brings itself (push and global sources)
    "Indexer": "pi_framework.pipeline.indexer:Indexer",
    "IndexStats": "pi_framework.pipeline.indexer:IndexStats",
    "SinkOutage": "pi_framework.pipeline.indexer:SinkOutage",
    "LedgerUpdate": "pi_framework.pipeline.ledger:LedgerUpdate",
    "to_str": "pi_framework.pipeline.normalise:to_str",
    # the framework's verbs, run in this process (plugins' commands and tests)
    "search": "pi_framework.search:search",
    "vectorize": "pi_framework.sync.vectorize:vectorize",
    "live_sync": "pi_framework.sync.live:live_sync",
    # vectorization jobs and workspaces
    "jobs": "pi_framework.sync:jobs",
    "Jobs": "pi_framework.sync.jobs:Jobs",
    "forget_workspace": "pi_framework.sync.downgrade:forget_workspace",
    "stuck_workspaces": "pi_framework.sync.trigger:stuck_workspaces",
    "run_health_checks": "pi_framework.health:run_health_checks",
    # operators' eyes: metrics (no-ops unless the process records) and task options keeping text out of task events
    "metrics": "pi_framework.metrics",
    "redact_task_arguments": "pi_framework.events:redacting",
    # the built-in sinks (OpenSearchSink needs the ``opensearch`` extra: ImportError without it)
    "EmbeddedSink": "pi_framework.sinks.embedded:EmbeddedSink",
    "OpenSearchSink": "pi_framework.sinks.opensearch.sink:OpenSearchSink",
    "opensearch_index_name": "pi_framework.sinks.opensearch.queries:index_name",
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
    "WriteResult",
    "SinkError",
    "Settings",
    "SettingsError",
    "get_settings",
    # the core's services and Plane, imported on first use (:data:`_LAZY`)
    "get_registry",
    "get_sinks",
    "get_embedder",
    "Database",
    "DatabaseUnavailable",
    "get_database",
    "ModelBase",
    "utcnow",
    "JobStatus",
    "SyncState",
    "IndexedDocument",
    "WorkspaceVectorization",
    "PluginState",
    "Indexer",
    "IndexStats",
    "SinkOutage",
    "LedgerUpdate",
    "to_str",
    "search",
    "vectorize",
    "live_sync",
    "jobs",
    "Jobs",
    "forget_workspace",
    "stuck_workspaces",
    "run_health_checks",
    "metrics",
    "redact_task_arguments",
    "EmbeddedSink",
    "OpenSearchSink",
    "opensearch_index_name",
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
