"""The plugin manager: loads plugins from the ``pi_framework`` entry-point group and collects what they contribute.

Load order: entry points sorted by name, filtered by ``PI_LOAD_PLUGINS`` (allow-list) and
``PI_DISABLE_PLUGINS`` (deny-list). The :data:`ESSENTIAL_PLUGINS` (built-ins the core cannot work
without) always load: the allow-list acts on the other plugins only, and naming an essential plugin in
the deny-list is a :class:`~pi_framework.settings.SettingsError`, as pytest refuses ``-p no:`` for its
essential plugins.

Every hook is called through pluggy (``pm.hook``), so hook wrappers (``wrapper=True`` /
``hookwrapper=True``), ``tryfirst``/``trylast`` and ``pm.enable_tracing()`` see the calls. Isolation is
per plugin: each ``register_*`` hook is called once per implementing plugin through
``pm.subset_hook_caller`` (the other plugins' implementations removed, every wrapper kept), with a
collector that knows which plugin it serves. A plugin that fails to import, declares a hook that is not in
:mod:`pi_framework.hookspecs`, or raises inside a ``register_*`` hook (``register_commands`` included, and
whatever a wrapper raises around its call) is recorded in :attr:`Registry.failures`, logged once at ERROR,
unregistered, and everything it contributed (tasks, beat entries, sources, sinks, embedders, health checks,
commands) is dropped; the other plugins are unaffected.

Plugin settings (``register_settings``) are collected first and each model is built from the environment right
away: an invalid value fails that plugin alone (recorded in :attr:`Registry.failures` as ``invalid settings:`` and
the one-line :class:`~pi_framework.settings.SettingsError`, e.g. ``MY_SYNC_INTERVAL='soon' is invalid:
expected an integer``), as a plugin that fails to import; ``pi settings`` exits 2 on it. A model whose variable is
one of the core's, or another plugin's, is refused the same way (another plugin's: a conflict, like two tasks).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click
import pluggy
from loguru import logger
from pydantic_settings import BaseSettings

from pi_framework import hookspecs
from pi_framework.contract.contributions import (
    EmbedderFactory,
    HealthCheck,
    PeriodicJob,
    SinkFactory,
    Source,
    TaskSpec,
    source_name_problem,
)
from pi_framework.redaction import redact_text, register_secrets, settings_secrets
from pi_framework.settings import Settings, SettingsError, load_model

ENTRY_POINT_GROUP = "pi_framework"

#: built-in plugins the core cannot work without: the default sink, the embedders, vectorization and live sync, and
#: index generations (a model change goes live through them).
#: ``PI_LOAD_PLUGINS`` cannot leave them out and ``PI_DISABLE_PLUGINS`` refuses them.
ESSENTIAL_PLUGINS = frozenset({"embedded_sink", "fastembed", "index_generations", "metrics_exporter", "workspace_sync"})


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
    sink_factories: dict[str, SinkFactory] = field(default_factory=dict)
    embedder_factories: dict[str, EmbedderFactory] = field(default_factory=dict)
    tasks: dict[str, TaskSpec] = field(default_factory=dict)
    periodic_jobs: dict[str, PeriodicJob] = field(default_factory=dict)
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    commands: dict[str, click.Command] = field(default_factory=dict)
    #: each plugin settings model (``module.Class``) and its instance, built from the environment at load
    settings_models: dict[str, BaseSettings] = field(default_factory=dict)
    #: each plugin variable and the model (``module.Class``) that reads it
    setting_variables: dict[str, str] = field(default_factory=dict)
    owner: dict[tuple[str, str], str] = field(default_factory=dict)

    # ------------------------------------------------------------------ collection
    def _claim(self, what: str, name: str, plugin: str, listed: bool = True) -> None:
        """Record that *plugin* contributes *what* *name*; two plugins claiming one name is a conflict."""
        previous = self.owner.get((what, name))
        if previous is not None:
            raise PluginConflictError(f"{what} {name!r} is registered by both plugin {previous!r} and plugin {plugin!r}")
        self.owner[(what, name)] = plugin
        if listed:
            self.plugins[plugin].add(what, name)

    def fail(self, plugin: str, reason: str) -> None:
        self.failures[plugin] = reason = redact_text(reason)  # shown by pi plugins and pi health
        logger.error("plugin {} failed: {}", plugin, reason)

    def _each_plugin(self, hook_name: str) -> list[tuple[str, pluggy.HookCaller]]:
        """``(plugin name, caller)`` for each plugin implementing *hook_name*, in pluggy's call order.

        Each caller is the hook through pluggy with every other plugin's (non-wrapper) implementation removed,
        so wrappers and tracing see one call per plugin and an exception belongs to that plugin alone.
        """
        impls = [
            impl
            for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls())
            if not impl.wrapper and not impl.hookwrapper
        ]
        targets = list(dict.fromkeys(impl.plugin_name for impl in impls))
        return [
            (
                name,
                self.pm.subset_hook_caller(hook_name, remove_plugins=[impl.plugin for impl in impls if impl.plugin_name != name]),
            )
            for name in targets
        ]

    def call_each(self, hook_name: str, **kwargs: Any) -> None:
        """Call *hook_name* (through pluggy) on each plugin separately; an exception is logged against that plugin only."""
        for plugin, call in self._each_plugin(hook_name):
            try:
                call(**kwargs)
            except Exception as exc:  # noqa: BLE001 - one plugin's bug must not stop the others
                self.fail(plugin, f"{hook_name} raised {type(exc).__name__}: {exc}")

    def collect_commands(self, cli: click.Group) -> None:
        """Add the commands the plugins contributed (collected by :meth:`collect`) to *cli*, the ``pi`` group."""
        for name, command in self.commands.items():
            cli.add_command(command, name)

    def _register_commands(self, plugin: str, call: pluggy.HookCaller) -> None:
        """Run *plugin*'s ``register_commands`` on a group of its own, then claim what it added."""
        group = click.Group(name="pi")
        call(cli=group)
        for name, command in group.commands.items():
            self._add("command", name, command, self.commands, plugin)

    def collect(self) -> None:
        """Run every ``register_*`` hook, then ``register_commands``. Conflicts raise; any other exception fails just
        that plugin and drops everything it contributed."""
        collectors: dict[str, Callable[[str], dict[str, Any]]] = {
            "register_settings": lambda plugin: {"register": lambda model: self._add_settings(model, plugin)},
            "register_state_names": lambda plugin: {"register": lambda name: self._claim("state name", name, plugin)},
            "register_sources": lambda plugin: {
                "register": lambda source: self._add_source(source, plugin),
                "settings": self.settings,
                "plugin_settings": self.plugin_settings,
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
                "plugin_settings": self.plugin_settings,
            },
            "register_health_checks": lambda plugin: {
                "register": lambda check: self._add("health check", check.name, check, self.health_checks, plugin)
            },
        }
        for hook_name in [*collectors, "register_commands"]:
            for plugin, call in self._each_plugin(hook_name):
                if plugin in self.failures:
                    continue
                try:
                    if hook_name == "register_commands":
                        self._register_commands(plugin, call)
                    else:
                        call(**collectors[hook_name](plugin))
                except PluginConflictError:
                    raise
                except SettingsError as exc:
                    self.fail(plugin, f"invalid settings: {exc}")
                    self._forget(plugin)
                except Exception as exc:  # noqa: BLE001 - a plugin's bug must not stop the others
                    self.fail(plugin, f"{hook_name} raised {type(exc).__name__}: {exc}")
                    self._forget(plugin)

    def _add_source(self, source: Source, plugin: str) -> None:
        """A source whose name is refused (``:`` in it, or reserved for rows the core or a bundled plugin keeps) fails
        its plugin: its rows would collide with another owner's in the PI database."""
        problem = source_name_problem(source, self.reserved_state_names)
        if problem is not None:
            raise ValueError(problem)
        self._add("source", source.name, source, self.sources, plugin)

    @property
    def reserved_state_names(self) -> set[str]:
        """The ``sync_states`` names plugins reserved with ``register_state_names`` (no workspace source may take one)."""
        return {name for kind, name in self.owner if kind == "state name"}

    def _add_settings(self, model: type[BaseSettings], plugin: str) -> None:
        """Claim *model* and each of its variables for *plugin*, then build it from the environment (may raise
        :class:`~pi_framework.settings.SettingsError`); its secrets are scrubbed from logs from then on."""
        if not (isinstance(model, type) and issubclass(model, BaseSettings)):
            raise TypeError(f"register_settings takes a pydantic-settings model class, not {model!r}")
        core = sorted(set(model.model_fields) & set(Settings.model_fields))
        if core:
            raise ValueError(f"{model.__name__} declares core setting(s) {', '.join(core)}")
        key = f"{model.__module__}.{model.__qualname__}"
        self._claim("settings", key, plugin)
        for variable in model.model_fields:
            self._claim("setting", variable, plugin, listed=False)
            self.setting_variables[variable] = key
        self.settings_models[key] = instance = load_model(model)
        register_secrets(*settings_secrets(instance))

    def plugin_settings(self, model: type[BaseSettings]) -> Any:
        """The instance of *model* (a class a plugin registered with ``register_settings``), built and validated at load.

        Raises :class:`LookupError` when no loaded plugin registered *model* (its plugin is disabled or failed).
        """
        key = f"{model.__module__}.{model.__qualname__}"
        try:
            return self.settings_models[key]
        except KeyError:
            raise LookupError(f"settings {key} are not registered by any loaded plugin (disabled or failed?)") from None

    def _add(self, what: str, name: str, value: Any, into: dict[str, Any], plugin: str) -> None:
        self._claim(what, name, plugin)
        into[name] = value

    def _forget(self, plugin: str) -> None:
        """Drop everything a failed plugin contributed before it raised, and the plugin itself."""
        stores = {
            "source": self.sources,
            "sink": self.sink_factories,
            "embedder": self.embedder_factories,
            "task": self.tasks,
            "periodic job": self.periodic_jobs,
            "health check": self.health_checks,
            "command": self.commands,
            "settings": self.settings_models,
            "setting": self.setting_variables,
        }
        for (what, name), owner in list(self.owner.items()):
            if owner == plugin:
                stores[what].pop(name, None)
                del self.owner[(what, name)]
        if self.pm.get_plugin(plugin) is not None:
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
    """Essential plugins always load; the allow-list and the deny-list act on the others."""
    if name in ESSENTIAL_PLUGINS:
        return True
    if settings.PI_LOAD_PLUGINS and name not in settings.PI_LOAD_PLUGINS:
        return False
    return name not in settings.PI_DISABLE_PLUGINS


def _refuse_disabling_essentials(settings: Settings) -> None:
    refused = sorted(ESSENTIAL_PLUGINS.intersection(settings.PI_DISABLE_PLUGINS))
    if refused:
        raise SettingsError(
            f"PI_DISABLE_PLUGINS={','.join(settings.PI_DISABLE_PLUGINS)!r} is invalid: {', '.join(refused)} "
            f"cannot be disabled (essential plugins, always loaded: {', '.join(sorted(ESSENTIAL_PLUGINS))})"
        )


def load_plugins(settings: Settings) -> Registry:
    """Build a plugin manager from the entry points and collect every contribution.

    Raises :class:`~pi_framework.settings.SettingsError` when ``PI_DISABLE_PLUGINS`` names an essential plugin.
    """
    _refuse_disabling_essentials(settings)
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
