"""Process-wide objects built from settings and plugins: the registry, the sinks, the embedder.

Each is built on first use and kept for the life of the process (a worker loads its model once,
not once per task). :func:`reset` forgets them, for tests and after a fork.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic_settings import BaseSettings
from sqlalchemy import Table

from pi_framework.contract.contributions import Embedder
from pi_framework.contract.sinks import Sink
from pi_framework.plane.source import PlaneSource
from pi_framework.plugins import Registry, load_plugins
from pi_framework.settings import Settings, get_settings

_registry: Registry | None = None
_sinks: list[Sink] | None = None
_embedder: Embedder | None = None


class ConfigurationError(RuntimeError):
    """Settings name a sink or embedder that no loaded plugin provides."""


def get_registry(settings: Settings | None = None) -> Registry:
    """The process's registry; built from *settings* (default: the environment's).

    Asked for with other *settings* than the registry was built from, it is rebuilt for them (sinks and embedder
    too): an argument is never silently ignored.
    """
    global _registry, _sinks, _embedder
    if _registry is not None and settings is not None and settings != _registry.settings:
        for sink in _sinks or []:
            sink.close()
        _registry = _sinks = _embedder = None
    if _registry is None:
        _registry = load_plugins(settings or get_settings())
    return _registry


def plugin_settings(model: type[BaseSettings]) -> Any:
    """This process's instance of *model*, a settings class a loaded plugin registered with ``register_settings``."""
    return get_registry().plugin_settings(model)


def get_sinks() -> list[Sink]:
    """The sinks named by ``PI_SINKS`` (default: opensearch if ``OPENSEARCH_URL`` else embedded)."""
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


def get_embedder() -> Embedder:
    """The embedder named by ``PI_EMBEDDER``, built once per process."""
    global _embedder
    if _embedder is None:
        registry = get_registry()
        name = registry.settings.PI_EMBEDDER
        if name not in registry.embedder_factories:
            raise ConfigurationError(
                f"PI_EMBEDDER={name!r} is not provided by any loaded plugin "
                f"(available: {', '.join(sorted(registry.embedder_factories)) or 'none'})"
            )
        _embedder = registry.embedder_factories[name](registry.settings)
    return _embedder


def reconfigure(env: Mapping[str, str], unset: Iterable[str] = ()) -> None:
    """Point this process at new environment variables: drop *unset*, apply *env*, then :func:`reset`
    (the demo and benchmarks switch databases this way)."""
    for name in unset:
        os.environ.pop(name, None)
    os.environ.update(env)
    reset()


def reset() -> None:
    """Forget everything built from the environment: settings, registry, sinks, embedder and the database
    engines (the next use rebuilds them from the current environment)."""
    from pi_framework.db import reset_database
    from pi_framework.plane import reset_plane_engine

    global _registry, _sinks, _embedder
    for sink in _sinks or []:
        sink.close()
    _registry = _sinks = _embedder = None
    get_settings.cache_clear()
    reset_database()
    reset_plane_engine()


def plane_tables() -> tuple[Table, ...]:
    """The Plane tables the installed plugins' sources declare themselves (``PlaneSource.tables``), so that a sample or
    test database serves every installed source, not only those reading the tables the core declares."""
    sources = get_registry().sources.values()
    return tuple(dict.fromkeys(table for source in sources if isinstance(source, PlaneSource) for table in source.tables))
