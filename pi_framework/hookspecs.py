"""Hook specifications: the whole contract between pi-framework and its plugins.

A plugin is a module (or object) with functions decorated by ``pi_framework.hookimpl``
whose names are among those below. It is found through the entry-point group
``pi_framework``; the core's built-in plugins are registered the same way.

Most hooks follow the ``register_*(register)`` pattern: the core passes a collector and the
plugin calls it once per contribution, so one plugin can contribute any number of things and
the core knows which plugin contributed what. Hooks are called once per process, after every
plugin is loaded, in pluggy's order (last registered first). A hook that raises is reported
against its plugin and the others still run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from pi_framework.contract.contributions import EmbedderFactory, HealthCheck, PeriodicJob, SinkFactory, Source
    from pi_framework.settings import PluginSettings, Settings

hookspec = pluggy.HookspecMarker("pi_framework")


@hookspec
def register_settings(register: Callable[[type[PluginSettings]], None]) -> None:
    """Contribute the plugin's settings: ``register(Model)`` for a :class:`~pi_framework.settings.PluginSettings` subclass.

    Called before every other hook. Each field is an environment variable of the same name, read like the core's
    (no ``.env`` file, comma lists for list fields); the model is built and validated at load, and an invalid value
    fails this plugin alone (recorded in ``pi plugins`` / ``pi health``, one line naming the variable). ``pi settings``
    shows the values (secrets masked: ``SecretStr`` fields and names with token/password/secret/key), ``pi settings
    --markdown`` documents them. A variable of the core's or of another plugin's is refused. The plugin reads its
    values with ``plugin_settings(Model)`` (:mod:`pi_framework.api`), or the ``plugin_settings`` argument of
    :func:`register_sources` and :func:`register_periodic_jobs`.
    """


@hookspec
def register_state_names(register: Callable[[str], None]) -> None:
    """Reserve the names of ``sync_states`` rows the plugin keeps under names of its own: ``register(name)``.

    Called after :func:`register_settings`, before every other hook. No workspace source may take such a name (its
    cursors would be those rows). New rows belong under ``PluginState("<plugin>")`` (``plugin:<plugin>``), which needs
    no reservation; this is for rows a plugin kept before that existed (a billing plugin's ``plans`` markers, say),
    read and written with ``PluginState.reserved(name)``.
    """


@hookspec
def register_sources(
    register: Callable[[Source], None], settings: Settings, plugin_settings: Callable[[type[PluginSettings]], Any]
) -> None:
    """Contribute content sources: call ``register(source)`` for each :class:`~pi_framework.contract.contributions.Source`.

    ``plugin_settings(Model)`` is the instance of a model registered with :func:`register_settings`.
    """


@hookspec
def register_sinks(register: Callable[[str, SinkFactory], None]) -> None:
    """Contribute index sinks: ``register(name, factory)``; ``factory(settings)`` builds the sink on first use.

    Which sinks are written to is chosen by ``PI_SINKS`` (default ``opensearch`` when
    ``OPENSEARCH_URL`` is set, else ``embedded``).
    """


@hookspec
def register_embedders(register: Callable[[str, EmbedderFactory], None]) -> None:
    """Contribute embedders: ``register(name, factory)``; ``PI_EMBEDDER`` picks one (default ``fastembed``).

    The factory is called at most once per process, when the first text is embedded.
    """


@hookspec
def register_tasks(register: Callable[..., None]) -> None:
    """Contribute Celery tasks: ``register(func, name="pi.celery_app.x", **celery_task_options)``.

    Two plugins registering the same task name stop the app at start with an error naming both.
    """


@hookspec
def register_periodic_jobs(
    register: Callable[[PeriodicJob], None], settings: Settings, plugin_settings: Callable[[type[PluginSettings]], Any]
) -> None:
    """Contribute beat entries: ``register(PeriodicJob(...))``; pass ``enabled=False`` to list a job as switched off.

    ``plugin_settings(Model)`` is the instance of a model registered with :func:`register_settings` (a job's interval
    and switch are the plugin's own settings).
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``pi`` command-line tool (``@cli.command()``)."""


@hookspec
def register_health_checks(register: Callable[[HealthCheck], None]) -> None:
    """Contribute health checks, run by ``pi health`` and the ``health_check`` task."""


@hookspec
def worker_start(settings: Settings) -> None:
    """A worker process starts (Celery ``worker_process_init``, or the main process of a solo pool)."""


@hookspec
def worker_stop(settings: Settings) -> None:
    """A worker process stops: release what :func:`worker_start` acquired."""


@hookspec(firstresult=True)
def workspace_plans(settings: Settings) -> Iterable[tuple[str, str]] | None:
    """Yield ``(workspace_id, plan)`` for every workspace with a plan; the first plugin that answers wins.

    The bundled billing plugin's default reads Plane's ``workspace_licenses``.
    """
