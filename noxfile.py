"""nox sessions: the core, and each plugin installed with only the core (proves each installs alone).

The whole suite in one environment is ``./dev test``; these sessions are slower (one venv each).
"""

from __future__ import annotations

import os

import nox

PLUGINS = ["pi_issues", "pi_pages", "pi_docs", "pi_plans", "pi_maintenance", "pi_chats", "pi_cycles", "pi_comments"]
#: test suites that need content from other plugins (workspace sync and plan sync vectorize Plane issues and pages)
TEST_NEEDS = {"core": ["pi_issues", "pi_pages"], "pi_plans": ["pi_issues", "pi_pages"]}
ENV = {
    name: os.environ[name]
    for name in ("PI_TEST_POSTGRES_URL", "PI_TEST_RABBITMQ_URL", "PI_REQUIRE_SERVICES")
    if name in os.environ
}
ENV["HF_HUB_OFFLINE"] = "1"


def _editables(plugins: list[str]) -> list[str]:
    return [arg for name in plugins for arg in ("-e", f"plugins/{name}")]


@nox.session
def core(session: nox.Session) -> None:
    session.install("-e", ".[embeddings,opensearch,metrics,test]", *_editables(TEST_NEEDS["core"]))
    session.run("pytest", "tests", *session.posargs, env=ENV)


@nox.session
@nox.parametrize("plugin", PLUGINS)
def plugin(session: nox.Session, plugin: str) -> None:
    session.install("-e", ".[embeddings,opensearch,test]", *_editables([plugin, *TEST_NEEDS.get(plugin, [])]))
    session.run("pytest", f"plugins/{plugin}/tests", *session.posargs, env=ENV)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
