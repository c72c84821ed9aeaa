"""Process-wide objects built from settings and plugins: the registry, the sinks, the embedder.

Each is built on first use and kept for the life of the process (a worker loads its model once,
not once per task). :func:`reset` forgets them, for tests and after a fork.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

from loguru import logger
from pydantic_settings import BaseSettings
from sqlalchemy import Table

from pi_framework.contract.contributions import Embedder
from pi_framework.contract.sinks import Sink
from pi_framework.db import generations as generation_state
from pi_framework.db import get_database
from pi_framework.db.generations import Generation, Snapshot
from pi_framework.mirror import MirrorSink
from pi_framework.plane.source import PlaneSource
from pi_framework.plugins import Registry, load_plugins
from pi_framework.settings import Settings, get_settings

_registry: Registry | None = None
_sinks: list[Sink] | None = None
#: (when read, what was read) of the index generations
_snapshot: tuple[float, Snapshot] | None = None
_generation_sinks: dict[str, list[Sink]] = {}
_embedders: dict[tuple[str, str], Embedder] = {}
_mirrors: dict[str, list[Sink]] = {}
#: building generation -> when this process last failed to build its mirrors (its model would not load)
_mirror_failures: dict[str, float] = {}
#: how long a process writes the live generation only after its mirrors failed, before it tries again
_MIRROR_RETRY_SECONDS = 60.0


class ConfigurationError(RuntimeError):
    """Settings name a sink or embedder that no loaded plugin provides."""


def get_registry(settings: Settings | None = None) -> Registry:
    """The process's registry; built from *settings* (default: the environment's).

    Asked for with other *settings* than the registry was built from, it is rebuilt for them (sinks and embedder
    too): an argument is never silently ignored.
    """
    global _registry
    if _registry is not None and settings is not None and settings != _registry.settings:
        _forget_built()
    if _registry is None:
        _registry = load_plugins(settings or get_settings())
    return _registry


def plugin_settings(model: type[BaseSettings]) -> Any:
    """This process's instance of *model*, a settings class a loaded plugin registered with ``register_settings``."""
    return get_registry().plugin_settings(model)


def _base_sinks() -> list[Sink]:
    """The sinks named by ``PI_SINKS`` (default: opensearch if ``OPENSEARCH_URL`` else embedded), on their own storage
    names (the first index generation's)."""
    global _sinks
    if _sinks is None:
        registry = get_registry()
        missing = [name for name in registry.settings.sink_names if name not in registry.sink_factories]
        if missing:
            raise ConfigurationError(
                f"sink(s) {', '.join(missing)} not provided by any loaded plugin "
                f"(available: {', '.join(sorted(registry.sink_factories)) or 'none'})"
            )
        _sinks = [registry.sink_factories[name](registry.settings) for name in registry.settings.sink_names]
    return _sinks


def configured_model() -> tuple[str, str]:
    """``(PI_EMBEDDER, PI_EMBEDDING_MODEL)``: the model the settings ask for (a change starts a new index generation)."""
    settings = get_registry().settings
    return (settings.PI_EMBEDDER, settings.PI_EMBEDDING_MODEL)


def generations() -> Snapshot:
    """The live and building index generations (:mod:`pi_framework.db.generations`), read again at most every
    ``PI_GENERATION_CHECK_SECONDS``; when the PI database cannot be read, the last one read."""
    global _snapshot
    settings = get_registry().settings
    now = time.monotonic()
    if _snapshot is None or now - _snapshot[0] >= settings.PI_GENERATION_CHECK_SECONDS:
        try:
            _snapshot = (now, generation_state.snapshot(get_database(settings), *configured_model()))
        except Exception:
            if _snapshot is None:
                raise
            logger.warning("runtime: could not read the index generations; still using {}", _snapshot[1].live.name)
    return _snapshot[1]


def forget_generations() -> None:
    """Read the index generations again on next use (this process just swapped them)."""
    global _snapshot
    _snapshot = None


def sinks_of(generation: Generation) -> list[Sink]:
    """The sinks storing *generation*, built once per process."""
    if generation.storage not in _generation_sinks:
        base = _base_sinks()
        _generation_sinks[generation.storage] = (
            base if not generation.storage else [sink.for_generation(generation.storage) for sink in base]
        )
    return _generation_sinks[generation.storage]


def embedder_of(generation: Generation) -> Embedder:
    """The embedder of *generation*'s model, built once per process."""
    if generation.model_key not in _embedders:
        registry = get_registry()
        name, model = generation.model_key
        if name not in registry.embedder_factories:
            raise ConfigurationError(
                f"the embedder {name!r} of index generation {generation.name} is not provided by any loaded plugin "
                f"(available: {', '.join(sorted(registry.embedder_factories)) or 'none'})"
            )
        settings = registry.settings.model_copy(update={"PI_EMBEDDER": name, "PI_EMBEDDING_MODEL": model})
        _embedders[generation.model_key] = registry.embedder_factories[name](settings)
    return _embedders[generation.model_key]


def get_sinks() -> list[Sink]:
    """The live index generation's sinks (what search reads)."""
    return sinks_of(generations().live)


def get_embedder() -> Embedder:
    """The embedder of the live index generation's model (``PI_EMBEDDER`` + ``PI_EMBEDDING_MODEL`` until a model
    change goes live)."""
    return embedder_of(generations().live)


def write_sinks() -> list[Sink]:
    """What a writer writes: the live generation's sinks, and while another generation is built, a
    :class:`~pi_framework.mirror.MirrorSink` per sink into it (after them: the live write comes first)."""
    snapshot = generations()
    live = sinks_of(snapshot.live)
    if snapshot.building is None:
        return live
    key = snapshot.building.name
    if key not in _mirrors:
        database = get_database(get_registry().settings)
        failed_at = _mirror_failures.get(key)
        if failed_at is not None and time.monotonic() - failed_at < _MIRROR_RETRY_SECONDS:
            return live
        try:
            targets, embedder = sinks_of(snapshot.building), embedder_of(snapshot.building)
        except Exception as exc:  # noqa: BLE001 - a model that cannot load must not stop the live writes
            # what this process writes from now on misses the new generation: every scope is copied again later
            _mirror_failures[key] = time.monotonic()
            logger.warning(
                "index generation {} ({}): cannot write it here ({}: {}); writing the live generation only",
                key,
                snapshot.building.model,
                type(exc).__name__,
                exc,
            )
            generation_state.invalidate(database, key, None)
            generation_state.note_error(database, key, f"a writer cannot load the model: {type(exc).__name__}: {exc}")
            return live
        _mirrors[key] = [
            MirrorSink(sink, target, embedder, key, database) for sink, target in zip(live, targets, strict=True)
        ]
    return live + _mirrors[key]


def reconfigure(env: Mapping[str, str], unset: Iterable[str] = ()) -> None:
    """Point this process at new environment variables: drop *unset*, apply *env*, then :func:`reset`
    (the demo and benchmarks switch databases this way)."""
    for name in unset:
        os.environ.pop(name, None)
    os.environ.update(env)
    reset()


def _forget_built() -> None:
    """Close and forget the registry, sinks, embedders and generation reading (rebuilt on next use)."""
    global _registry, _sinks, _snapshot
    for sinks in [_sinks or [], *_generation_sinks.values()]:
        for sink in sinks:
            sink.close()
    _registry = _sinks = _snapshot = None
    _generation_sinks.clear()
    _embedders.clear()
    _mirrors.clear()
    _mirror_failures.clear()


def reset() -> None:
    """Forget everything built from the environment: settings, registry, sinks, embedder and the database
    engines (the next use rebuilds them from the current environment)."""
    from pi_framework.db import reset_database
    from pi_framework.plane import reset_plane_engine

    _forget_built()
    get_settings.cache_clear()
    reset_database()
    reset_plane_engine()


def plane_tables() -> tuple[Table, ...]:
    """The Plane tables the installed plugins' sources declare themselves (``PlaneSource.tables``), so that a sample or
    test database serves every installed source, not only those reading the tables the core declares."""
    sources = get_registry().sources.values()
    return tuple(dict.fromkeys(table for source in sources if isinstance(source, PlaneSource) for table in source.tables))
