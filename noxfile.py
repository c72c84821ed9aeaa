"""nox sessions: the core alone, and each plugin installed with only the core (proves each installs alone).

The whole suite in one environment is ``./dev test``; these sessions are slower (one venv each).
"""

from __future__ import annotations

import os

import nox

PLUGINS = ["pi_issues", "pi_pages", "pi_docs", "pi_plans", "pi_maintenance", "pi_chats"]
ENV = {
    name: os.environ[name]
    for name in ("PI_TEST_POSTGRES_URL", "PI_TEST_RABBITMQ_URL", "PI_REQUIRE_SERVICES")
    if name in os.environ
}
ENV["HF_HUB_OFFLINE"] = "1"


@nox.session
def core(session: nox.Session) -> None:
    session.install("-e", ".[embeddings,opensearch,test]")
    session.run("pytest", "tests", *session.posargs, env=ENV)


@nox.session
@nox.parametrize("plugin", PLUGINS)
def plugin(session: nox.Session, plugin: str) -> None:
    session.install("-e", ".[embeddings,opensearch,test]", "-e", f"plugins/{plugin}")
    session.run("pytest", f"plugins/{plugin}/tests", *session.posargs, env=ENV)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
