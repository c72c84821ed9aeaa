"""The plugin system: entry points, allow/deny lists, failure isolation, conflicts, beat entries."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from pi_framework import hookimpl
from pi_framework.celery_app import create_app
from pi_framework.contract.contributions import HealthCheck, PeriodicJob
from pi_framework.plugins import ESSENTIAL_PLUGINS, PluginConflictError, load_plugins
from pi_framework.settings import SettingsError


def test_builtins_are_plugins_like_any_other(pi_settings):
    registry = load_plugins(pi_settings)
    assert registry.plugins["core_health"].distribution == "pi-framework"
    assert {"database", "broker", "sinks", "embedder", "beat"} <= set(registry.health_checks)


def test_installed_plugins_contribute_tasks_and_beat(with_test_plugins):
    settings = with_test_plugins()
    registry = load_plugins(settings)
    alpha = registry.plugins["pi_test_alpha"]
    assert (alpha.distribution, alpha.version) == ("pi-test-alpha", "1.2.3")
    assert "pi.celery_app.test_alpha_marker" in registry.tasks
    assert registry.owner[("task", "pi.celery_app.test_beta_marker")] == "pi_test_beta"

    app = create_app(settings)
    assert "pi.celery_app.test_alpha_marker" in app.tasks
    entry = app.conf.beat_schedule["test-alpha-tick"]
    assert entry["task"] == "pi.celery_app.test_alpha_marker"
    assert entry["options"]["expires"] == 10.0, "beat ticks must expire so a backlog cannot pile up"
    assert "test-beta-off" not in app.conf.beat_schedule, "a disabled job has no beat entry at all"
    task = app.tasks["pi.celery_app.test_alpha_marker"]
    assert task.acks_late and task.reject_on_worker_lost


def test_broken_rogue_and_raising_plugins_are_reported_and_the_rest_load(with_test_plugins):
    registry = load_plugins(with_test_plugins())
    assert "RuntimeError: pi_test_broken is broken on purpose" in registry.failures["pi_test_broken"]
    assert "register_widgets" in registry.failures["pi_test_rogue"]
    assert "raiser cannot count" in registry.failures["pi_test_raiser"]
    assert "pi.celery_app.test_raiser_orphan" not in registry.tasks, "a failed plugin leaves nothing half-registered"
    assert {"pi_test_alpha", "pi_test_beta", "core_health"} <= set(registry.plugins)


def test_deny_list_and_allow_list(with_test_plugins):
    denied = load_plugins(with_test_plugins(PI_DISABLE_PLUGINS="pi_test_beta,pi_test_broken"))
    assert "pi_test_beta" not in denied.plugins and "pi.celery_app.test_beta_marker" not in denied.tasks
    assert "pi_test_broken" not in denied.failures

    allowed = load_plugins(with_test_plugins(PI_DISABLE_PLUGINS=None, PI_LOAD_PLUGINS="pi_test_alpha"))
    assert set(allowed.plugins) == {"pi_test_alpha", *ESSENTIAL_PLUGINS}, "the allow-list acts on non-essential plugins"


def test_essential_plugins_always_load_and_cannot_be_disabled(pi_env):
    only_search = load_plugins(pi_env(PI_LOAD_PLUGINS="search"))
    assert set(only_search.plugins) == {"search", "embedded_sink", "fastembed", "index_generations", "metrics_exporter", "workspace_sync"}
    assert {"embedded", "fastembed"} <= set(only_search.sink_factories) | set(only_search.embedder_factories)
    assert "vectorize" in only_search.commands

    with pytest.raises(SettingsError, match=r"PI_DISABLE_PLUGINS='search,workspace_sync' is invalid: workspace_sync cannot"):
        load_plugins(pi_env(PI_LOAD_PLUGINS=None, PI_DISABLE_PLUGINS="search,workspace_sync"))
    result = subprocess.run([sys.executable, "-m", "pi_framework.manage", "plugins"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines()[-1].startswith("error: PI_DISABLE_PLUGINS='search,workspace_sync' is invalid")


class _Shadow:
    """An in-process plugin that claims a task and a beat name another plugin already owns."""

    def __init__(self, task: str | None = None, job: str | None = None) -> None:
        self.task, self.job = task, job

    @hookimpl
    def register_tasks(self, register):
        if self.task:
            register(lambda: None, name=self.task)

    @hookimpl
    def register_periodic_jobs(self, register, settings):
        if self.job:
            register(PeriodicJob(self.job, "pi.celery_app.test_alpha_marker", every=5))


@pytest.mark.parametrize(
    ("shadow", "message"),
    [
        (_Shadow(task="pi.celery_app.test_alpha_marker"), "task 'pi.celery_app.test_alpha_marker' is registered by both"),
        (_Shadow(job="test-alpha-tick"), "periodic job 'test-alpha-tick' is registered by both"),
    ],
)
def test_two_plugins_claiming_one_name_is_an_error_not_an_overwrite(with_test_plugins, register_plugin, shadow, message):
    with_test_plugins(PI_LOAD_PLUGINS="pi_test_alpha")
    with pytest.raises(PluginConflictError, match=message):
        register_plugin(shadow, "shadow")


def test_pi_plugins_cli_lists_contributions_and_failures(with_test_plugins):
    with_test_plugins()
    out = subprocess.run(
        [sys.executable, "-m", "pi_framework.manage", "plugins"], capture_output=True, text=True, check=True
    ).stdout
    assert "pi_test_alpha  (pi-test-alpha 1.2.3)" in out
    assert "task: pi.celery_app.test_alpha_die_once, pi.celery_app.test_alpha_marker" in out
    assert "command: beta-hello" in out
    assert "disabled periodic jobs: test-beta-off" in out
    assert "FAILED pi_test_broken: import of pi_test_broken raised RuntimeError" in out
    hello = subprocess.run(
        [sys.executable, "-m", "pi_framework.manage", "beta-hello"], capture_output=True, text=True, check=True
    )
    assert hello.stdout.strip() == "hello from beta", "plugins add CLI commands"


def test_a_failed_plugin_is_one_json_error_line(with_test_plugins):
    import json

    with_test_plugins(PI_LOG_JSON="1", PI_LOAD_PLUGINS="pi_test_broken,pi_test_alpha")
    result = subprocess.run([sys.executable, "-m", "pi_framework.manage", "plugins"], capture_output=True, text=True, check=True)
    records = [json.loads(line)["record"] for line in result.stderr.splitlines() if line.startswith("{")]
    errors = [record for record in records if record["level"]["name"] == "ERROR"]
    assert len(errors) == 1 and "pi_test_broken" in errors[0]["message"]


class _Watcher:
    """Wraps register_tasks and register_commands (pluggy ``wrapper=True``): sees every plugin's call and its error."""

    def __init__(self) -> None:
        self.task_calls = 0
        self.errors: list[str] = []

    @hookimpl(wrapper=True)
    def register_tasks(self, register):
        self.task_calls += 1
        return (yield)

    @hookimpl(wrapper=True)
    def register_commands(self, cli):
        try:
            return (yield)
        except RuntimeError as exc:
            self.errors.append(str(exc))
            raise


class _Source:
    name, kind, scope = "late_source", "late", "workspace"


class _FailsLate:
    """Contributes one of everything, then raises in register_commands (the last hook called)."""

    @hookimpl
    def register_sources(self, register, settings):
        register(_Source())

    @hookimpl
    def register_tasks(self, register):
        register(lambda: None, name="pi.celery_app.late_task")

    @hookimpl
    def register_periodic_jobs(self, register, settings):
        register(PeriodicJob("late-tick", "pi.celery_app.late_task", every=5))

    @hookimpl
    def register_health_checks(self, register):
        register(HealthCheck("late", lambda: {}))

    @hookimpl
    def register_commands(self, cli):
        @cli.command("late-command")
        def late_command():
            """Never reachable: the plugin fails right after adding it."""

        raise RuntimeError("late fails on purpose")


def test_hooks_are_called_through_pluggy_wrappers_and_tracing_see_them(register_plugin):
    watcher = _Watcher()
    registry = register_plugin(watcher, "watcher")
    implementers = {impl.plugin_name for impl in registry.pm.hook.register_tasks.get_hookimpls() if not impl.wrapper}
    assert implementers >= {"workspace_sync"}
    assert watcher.task_calls == len(implementers), "one call per plugin, each through the wrapper"

    traced: list[str] = []
    registry.pm.trace.root.setwriter(traced.append)
    undo = registry.pm.enable_tracing()
    try:
        register_plugin(_Shadow(), "shadow")
    finally:
        undo()
    assert any("register_tasks" in line for line in traced) and any("register_commands" in line for line in traced)


def test_a_plugin_raising_in_register_commands_leaves_nothing_registered(register_plugin):
    watcher = _Watcher()
    register_plugin(watcher, "watcher")
    registry = register_plugin(_FailsLate(), "fails_late")

    assert "register_commands raised RuntimeError: late fails on purpose" in registry.failures["fails_late"]
    assert watcher.errors == ["late fails on purpose"], "a wrapper sees the failing plugin's exception"
    assert "fails_late" not in registry.plugins and registry.pm.get_plugin("fails_late") is None
    assert "late_source" not in registry.sources and "pi.celery_app.late_task" not in registry.tasks
    assert "late-tick" not in registry.periodic_jobs and "late" not in registry.health_checks
    assert "late-command" not in registry.commands
    assert not [key for key, owner in registry.owner.items() if owner == "fails_late"]
    group = click.Group()
    registry.collect_commands(group)
    assert "late-command" not in group.commands and {"vectorize", "search", "demo"} <= set(group.commands)
    assert "pi.celery_app.late_task" not in create_app(registry.settings).tasks
    assert {"workspace_sync", "watcher"} <= set(registry.plugins), "the other plugins are unaffected"
