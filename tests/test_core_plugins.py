"""The plugin system: entry points, allow/deny lists, failure isolation, conflicts, beat entries."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pi_framework import hookimpl
from pi_framework.celery_app import create_app
from pi_framework.contributions import PeriodicJob
from pi_framework.plugins import PluginConflictError, load_plugins


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
    assert set(allowed.plugins) == {"pi_test_alpha"}


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
