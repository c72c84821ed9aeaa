"""The plugin manager: loads plugins from the ``pi_framework`` entry-point group and collects what they contribute.

Load order: entry points sorted by name, filtered by ``PI_LOAD_PLUGINS`` (allow-list) and
``PI_DISABLE_PLUGINS`` (deny-list). A plugin that fails to import, declares a hook that is not
in :mod:`pi_framework.hookspecs`, or raises inside a ``register_*`` hook is recorded in
:attr:`Registry.failures` and logged once at ERROR; the other plugins are unaffected.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy
from loguru import logger

from pi_framework import hookspecs
from pi_framework.contributions import HealthCheck, PeriodicJob, Source, TaskSpec
from pi_framework.settings import Settings

ENTRY_POINT_GROUP = "pi_framework"


class PluginConflictError(RuntimeError):
    """Two plugins claim the same task, beat entry, source, sink or embedder name."""


@dataclass
class PluginInfo:
    """One loaded plugin and what it contributed (what ``pi plugins`` prints)."""

    name: str
    distribution: str | None
    version: str | None
    contributes: dict[str, list[str]] = field(default_factory=dict)

    def add(self, what: str, name: str) -> None:
        self.contributes.setdefault(what, []).append(name)


@dataclass
class Registry:
    """Everything the loaded plugins contributed, keyed by name; ``owner`` maps each to its plugin."""

    settings: Settings
    pm: pluggy.PluginManager
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)
    sink_factories: dict[str, Callable[[Settings], Any]] = field(default_factory=dict)
    embedder_factories: dict[str, Callable[[Settings], Any]] = field(default_factory=dict)
    tasks: dict[str, TaskSpec] = field(default_factory=dict)
    periodic_jobs: dict[str, PeriodicJob] = field(default_factory=dict)
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    owner: dict[tuple[str, str], str] = field(default_factory=dict)

    # ------------------------------------------------------------------ collection
    def _claim(self, what: str, name: str, plugin: str) -> None:
        previous = self.owner.get((what, name))
        if previous is not None:
            raise PluginConflictError(f"{what} {name!r} is registered by both plugin {previous!r} and plugin {plugin!r}")
        self.owner[(what, name)] = plugin
        self.plugins[plugin].add(what, name)

    def fail(self, plugin: str, reason: str) -> None:
        self.failures[plugin] = reason
        logger.error("plugin {} failed: {}", plugin, reason)

    def call_each(self, hook_name: str, **kwargs: Any) -> None:
        """Call *hook_name* on each plugin separately; an exception is logged against that plugin only."""
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            try:
                impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
            except Exception as exc:  # noqa: BLE001 - one plugin's bug must not stop the others
                self.fail(impl.plugin_name, f"{hook_name} raised {type(exc).__name__}: {exc}")

    def collect_commands(self, cli: Any) -> None:
        """Let each plugin add sub-commands to *cli* (a click group), recording which plugin added which."""
        for impl in reversed(self.pm.hook.register_commands.get_hookimpls()):
            before = set(cli.commands)
            try:
                impl.function(cli=cli)
            except Exception as exc:  # noqa: BLE001 - one plugin's bug must not stop the others
                self.fail(impl.plugin_name, f"register_commands raised {type(exc).__name__}: {exc}")
                continue
            if impl.plugin_name in self.plugins:
                for name in sorted(set(cli.commands) - before):
                    self.plugins[impl.plugin_name].add("command", name)

    def collect(self) -> None:
        """Run every ``register_*`` hook. Conflicts raise; any other exception fails just that plugin."""
        collectors: dict[str, Callable[[str], dict[str, Any]]] = {
            "register_sources": lambda plugin: {
                "register": lambda source: self._add("source", source.name, source, self.sources, plugin),
                "settings": self.settings,
            },
            "register_sinks": lambda plugin: {
                "register": lambda name, factory: self._add("sink", name, factory, self.sink_factories, plugin)
            },
            "register_embedders": lambda plugin: {
                "register": lambda name, factory: self._add("embedder", name, factory, self.embedder_factories, plugin)
            },
            "register_tasks": lambda plugin: {
                "register": lambda func, name, **options: self._add(
                    "task", name, TaskSpec(name, func, options), self.tasks, plugin
                )
            },
            "register_periodic_jobs": lambda plugin: {
                "register": lambda job: self._add("periodic job", job.name, job, self.periodic_jobs, plugin),
                "settings": self.settings,
            },
            "register_health_checks": lambda plugin: {
                "register": lambda check: self._add("health check", check.name, check, self.health_checks, plugin)
            },
        }
        for hook_name, make_kwargs in collectors.items():
            for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
                plugin = impl.plugin_name
                if plugin in self.failures:
                    continue
                try:
                    impl.function(**{k: v for k, v in make_kwargs(plugin).items() if k in impl.argnames})
                except PluginConflictError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a plugin's bug must not stop the others
                    self.fail(plugin, f"{hook_name} raised {type(exc).__name__}: {exc}")
                    self._forget(plugin)

    def _add(self, what: str, name: str, value: Any, into: dict[str, Any], plugin: str) -> None:
        self._claim(what, name, plugin)
        into[name] = value

    def _forget(self, plugin: str) -> None:
        """Drop everything a failed plugin contributed before it raised."""
        stores = {
            "source": self.sources,
            "sink": self.sink_factories,
            "embedder": self.embedder_factories,
            "task": self.tasks,
            "periodic job": self.periodic_jobs,
            "health check": self.health_checks,
        }
        for (what, name), owner in list(self.owner.items()):
            if owner == plugin:
                stores[what].pop(name, None)
                del self.owner[(what, name)]
        self.pm.unregister(name=plugin)
        self.plugins.pop(plugin, None)

    # ------------------------------------------------------------------ queries
    def workspace_sources(self) -> list[Source]:
        return [source for source in self.sources.values() if source.scope == "workspace"]

    def enabled_periodic_jobs(self) -> list[PeriodicJob]:
        return [job for job in self.periodic_jobs.values() if job.enabled]


def _distribution_of(entry_point: importlib.metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = entry_point.dist
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def _wanted(name: str, settings: Settings) -> bool:
    if settings.PI_LOAD_PLUGINS and name not in settings.PI_LOAD_PLUGINS:
        return False
    return name not in settings.PI_DISABLE_PLUGINS


def load_plugins(settings: Settings) -> Registry:
    """Build a plugin manager from the entry points and collect every contribution."""
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    registry = Registry(settings=settings, pm=pm)
    entry_points = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    seen: set[str] = set()
    for entry_point in entry_points:
        name = entry_point.name
        if name in seen or not _wanted(name, settings):
            continue
        seen.add(name)
        dist_name, version = _distribution_of(entry_point)
        try:
            plugin = entry_point.load()
        except Exception as exc:  # noqa: BLE001 - ImportError, SyntaxError, anything the module raises
            registry.fail(name, f"import of {entry_point.value} raised {type(exc).__name__}: {exc}")
            continue
        try:
            pm.register(plugin, name=name)
            pm.check_pending()
        except (pluggy.PluginValidationError, ValueError) as exc:
            if pm.get_plugin(name) is not None:
                pm.unregister(name=name)
            registry.fail(name, f"rejected: {exc}")
            continue
        registry.plugins[name] = PluginInfo(name, dist_name, version)
    registry.collect()
    return registry
