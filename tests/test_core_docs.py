"""The README is the front door: every hook and every environment variable must be documented there."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from pi_framework import hookspecs
from pi_framework.settings import Settings

README = (Path(__file__).parents[1] / "README.md").read_text()
HOOKS = [name for name, value in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(value, "pi_framework_spec")]


def test_hookspecs_found():
    assert "register_sources" in HOOKS and len(HOOKS) >= 9


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook):
    assert f"`{hook}(" in README, f"hook {hook} is missing from README.md"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docstring(hook):
    assert getattr(hookspecs, hook).__doc__


def _bundled_plugin_models() -> list[type]:
    """The settings models the installed plugins register (``register_settings``), on default settings."""
    from pi_framework.plugins import load_plugins
    from pi_framework.settings import load_settings

    registry = load_plugins(load_settings())
    return [type(instance) for instance in registry.settings_models.values()]


MODELS = [Settings, *_bundled_plugin_models()]


@pytest.mark.parametrize("variable", sorted(name for model in MODELS for name in model.model_fields))
def test_every_environment_variable_is_documented(variable):
    assert f"`{variable}`" in README, f"{variable} is missing from README.md"


def test_readme_settings_table_is_current():
    from pi_framework.settings import describe_variables

    stale = [
        name
        for model in MODELS
        for name, default, meaning in describe_variables(model)
        if f"| `{name}` | {default} | {meaning} |" not in README
    ]
    assert not stale, f"README table out of date for {stale}: paste the output of `pi settings --markdown`"
