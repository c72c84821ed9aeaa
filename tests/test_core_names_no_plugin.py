"""The core names no bundled plugin: each plugin owns its variables (``register_settings``), its metrics
(``metrics.counter``/``gauge``/``histogram``) and the ``sync_states`` names it keeps (``register_state_names``), so a
third-party plugin can have all of these exactly like the bundled ones."""

from __future__ import annotations

import re
from pathlib import Path

import pi_framework

#: the bundled plugins' variables (pi_docs, pi_chats, pi_plans); ``PI_VECTORIZED_PLANS`` is the core's policy for its
#: ``workspace_plans`` hook (``pi demo`` reads it with no billing plugin installed), so it is not among them
PLUGIN_VARIABLES = re.compile(
    r"\b(PI_DOCS_[A-Z_]+|GITHUB_TOKEN|PI_GITHUB_[A-Z_]+|PI_CHATS_[A-Z_]+|CELERY_DOCS_[A-Z_]+|CELERY_WORKSPACE_PLAN_[A-Z_]+)\b"
)


BUNDLED = re.compile(r"\bpi_(docs|chats|plans|issues|pages|cycles|comments|maintenance)\b")


def test_the_core_names_no_bundled_plugin() -> None:
    package = Path(pi_framework.__file__).parent
    found = [
        f"{path.relative_to(package.parent)}:{number}: {match.group(0)}"
        for path in sorted(package.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        for match in BUNDLED.finditer(line)
    ]
    assert found == [], "the core names a bundled plugin"


def test_the_core_names_no_bundled_plugins_setting() -> None:
    package = Path(pi_framework.__file__).parent
    found = [
        f"{path.relative_to(package.parent)}:{number}: {match.group(0)}"
        for path in sorted(package.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        for match in PLUGIN_VARIABLES.finditer(line)
    ]
    assert found == [], "the core names a plugin's setting (it belongs to the plugin's register_settings model)"
