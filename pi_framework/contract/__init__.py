"""The plugin contract's floor: what a plugin sees, depending on nothing else in ``pi_framework``.

=================  ===========================================================================================
``documents``      :class:`Document` (what a source yields) and :class:`Chunk` (what a sink stores), ``chunk_id``
``sinks``          the :class:`Sink` protocol, :class:`SinkError`, :class:`WriteResult`, :class:`SearchQuery`,
                   :class:`Hit`, ``CREATED_BY``, :class:`Filters`,
                   ``FILTER_KEYS``
``contributions``  the :class:`Source` protocol (+ :class:`BaseSource`), :class:`Changes`, the :class:`Embedder`
                   protocol, :class:`TaskSpec`, :class:`PeriodicJob`, :class:`HealthCheck`, the factories
``names``          the ``sync_states`` names no source may take
=================  ===========================================================================================

The pipeline, the sinks, the sync machinery and every plugin depend on this package, never the reverse (the
layering is checked by import-linter in CI: see ``[tool.importlinter]`` in ``pyproject.toml``). Plugins import
these names from :mod:`pi_framework.api`.
"""

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
    source_name_problem,
)
from pi_framework.contract.documents import BodyFormat, Chunk, Document, chunk_id
from pi_framework.contract.sinks import CREATED_BY, FILTER_KEYS, Filters, Hit, SearchQuery, Sink, SinkError, WriteResult

__all__ = [
    "CREATED_BY",
    "FILTER_KEYS",
    "TASK_PREFIX",
    "BaseSource",
    "BodyFormat",
    "Changes",
    "Chunk",
    "Document",
    "Embedder",
    "EmbedderFactory",
    "Filters",
    "HealthCheck",
    "Hit",
    "PeriodicJob",
    "SearchQuery",
    "Sink",
    "SinkError",
    "SinkFactory",
    "Source",
    "TaskSpec",
    "WriteResult",
    "chunk_id",
    "source_name_problem",
]
