"""Plugins own their settings (``register_settings``): validated at load, shown by ``pi settings``, isolated on error."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from pydantic import Field, PositiveInt, SecretStr, field_validator

from pi_framework import hookimpl
from pi_framework.api import PluginSettings, plugin_settings, split_csv
from pi_framework.cli import build_cli
from pi_framework.plugins import PluginConflictError


class WidgetSettings(PluginSettings):
    PI_TEST_WIDGET_INTERVAL: PositiveInt = Field(default=600, description="Seconds between widget passes.")
    PI_TEST_WIDGET_TOKEN: SecretStr | None = Field(default=None, description="Token of the widget API.")
    PI_TEST_WIDGET_NAMES: list[str] = Field(default_factory=list, description="Widgets, comma separated.")

    @field_validator("PI_TEST_WIDGET_NAMES", mode="before")
    @classmethod
    def _names(cls, value: object) -> list[str]:
        return split_csv(value)


class WidgetPlugin:
    def __init__(self, model: type = WidgetSettings) -> None:
        self.model = model
        self.every: int | None = None

    @hookimpl
    def register_settings(self, register):
        register(self.model)

    @hookimpl
    def register_periodic_jobs(self, register, settings, plugin_settings):
        from pi_framework.contract.contributions import PeriodicJob

        self.every = plugin_settings(WidgetSettings).PI_TEST_WIDGET_INTERVAL
        register(PeriodicJob("test-widget", "pi.celery_app.test_widget", every=self.every))


def test_a_plugin_reads_its_settings_from_the_environment(pi_env, register_plugin):
    pi_env(PI_TEST_WIDGET_INTERVAL="90", PI_TEST_WIDGET_NAMES="a, b,,c", PI_TEST_WIDGET_TOKEN="w1dget-s3cret")
    plugin = WidgetPlugin()
    registry = register_plugin(plugin, "pi_test_widget")
    assert plugin.every == 90 and registry.periodic_jobs["test-widget"].every == 90
    values = plugin_settings(WidgetSettings)
    assert values is registry.plugin_settings(WidgetSettings)
    assert values.PI_TEST_WIDGET_NAMES == ["a", "b", "c"]
    assert registry.plugins["pi_test_widget"].contributes["settings"] == [f"{__name__}.WidgetSettings"]


def test_invalid_plugin_settings_fail_that_plugin_alone(pi_env, register_plugin):
    pi_env(PI_TEST_WIDGET_INTERVAL="soon")
    registry = register_plugin(WidgetPlugin(), "pi_test_widget")
    assert registry.failures["pi_test_widget"] == (
        "invalid settings: PI_TEST_WIDGET_INTERVAL='soon' is invalid: expected an integer"
    )
    assert "test-widget" not in registry.periodic_jobs and "pi_test_widget" not in registry.plugins
    assert "workspace_sync" in registry.plugins, "the other plugins load"
    with pytest.raises(LookupError, match="WidgetSettings"):
        registry.plugin_settings(WidgetSettings)


def test_a_core_variable_is_refused(pi_env, register_plugin):
    class Sneaky(PluginSettings):
        PI_LOG_LEVEL: str = "DEBUG"

    pi_env()
    registry = register_plugin(WidgetPlugin(Sneaky), "pi_test_sneaky")
    assert "declares core setting(s) PI_LOG_LEVEL" in registry.failures["pi_test_sneaky"]


def test_two_plugins_declaring_one_variable_conflict(pi_env, register_plugin):
    class Copy(PluginSettings):
        PI_TEST_WIDGET_INTERVAL: int = 1

    pi_env()
    register_plugin(WidgetPlugin(), "pi_test_widget")
    with pytest.raises(PluginConflictError, match="PI_TEST_WIDGET_INTERVAL"):
        register_plugin(WidgetPlugin(Copy), "pi_test_copy")


def test_pi_settings_shows_plugin_settings_masked_and_documents_them(pi_env, register_plugin):
    pi_env(PI_TEST_WIDGET_TOKEN="w1dget-s3cret", PI_TEST_WIDGET_NAMES="x,y")
    register_plugin(WidgetPlugin(), "pi_test_widget")
    result = CliRunner().invoke(build_cli(), ["settings"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "PI_TEST_WIDGET_TOKEN=***" in lines and "w1dget-s3cret" not in result.output
    assert "PI_TEST_WIDGET_NAMES=['x', 'y']" in lines and "# plugin pi_test_widget" in lines

    markdown = CliRunner().invoke(build_cli(), ["settings", "--markdown"]).output
    assert "Plugin `pi_test_widget`:" in markdown
    assert "| `PI_TEST_WIDGET_INTERVAL` | `600` | Seconds between widget passes. |" in markdown


def test_pi_settings_names_a_plugins_invalid_variable_and_exits_2(pi_env, register_plugin):
    pi_env(PI_TEST_WIDGET_INTERVAL="-3")
    register_plugin(WidgetPlugin(), "pi_test_widget")
    result = CliRunner().invoke(build_cli(), ["settings"])
    assert result.exit_code == 2
    assert "error: plugin pi_test_widget: PI_TEST_WIDGET_INTERVAL='-3' is invalid: expected a number greater than 0" in (
        result.output
    )
