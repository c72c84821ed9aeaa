"""README's "Write a source" is code that works: taken from the README, installed as a distribution with its entry point,
run through the SourceContract, then ``pi plugins``, ``pi vectorize --now`` and ``pi search`` show the new kind."""

from __future__ import annotations

import importlib
import json
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from pi_framework.cli import build_cli
from pi_framework.testing.source_contract import SourceContract

README = (Path(__file__).parents[1] / "README.md").read_text()


def tutorial(language: str, index: int = 0) -> str:
    """The *index*-th ``language`` code block of README's "Write a source" section."""
    section = README.split("\n## Write a source\n", 1)[1].split("\n## ", 1)[0]
    return section.split(f"```{language}\n")[index + 1].split("```", 1)[0]


class Helpdesk:
    """The tutorial's content: ``tickets(id, workspace_id, subject, body, version, closed)``, version bumped per write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with closing(sqlite3.connect(path)) as db, db:
            db.execute(
                "CREATE TABLE tickets (id TEXT PRIMARY KEY, workspace_id TEXT, subject TEXT, body TEXT, version INTEGER, closed INTEGER)"
            )
        self.version = 0

    def put(self, ticket_id: str, workspace_id: str, subject: str, body: str, closed: bool = False) -> None:
        self.version += 1
        with closing(sqlite3.connect(self.path)) as db, db:
            db.execute(
                "INSERT OR REPLACE INTO tickets VALUES (?, ?, ?, ?, ?, ?)",
                (ticket_id, workspace_id, subject, body, self.version, int(closed)),
            )

    def close(self, ticket_id: str) -> None:
        self.version += 1
        with closing(sqlite3.connect(self.path)) as db, db:
            db.execute("UPDATE tickets SET closed = 1, version = ? WHERE id = ?", (self.version, ticket_id))


@pytest.fixture
def helpdesk(tmp_path, monkeypatch) -> Helpdesk:
    desk = Helpdesk(tmp_path / "tickets.sqlite")
    monkeypatch.setenv("TICKETS_DB", str(desk.path))
    for workspace in ("ws-a", "ws-b"):
        desk.put(
            f"{workspace}-1", workspace, "Refund never arrived", "Paid twice for the March invoice; the refund never arrived."
        )
        desk.put(f"{workspace}-2", workspace, "Cannot log in", "The password reset e-mail goes to spam.")
    return desk


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """The tutorial installed as README's pyproject.toml says: package ``tickets_plugin``, distribution ``tickets-plugin``
    0.1.0, entry point ``tickets`` in group ``pi_framework`` (a dist-info written by hand: no pip, no network)."""
    site = tmp_path / "site"
    (site / "tickets_plugin").mkdir(parents=True)
    (site / "tickets_plugin" / "__init__.py").write_text(tutorial("python"))
    pyproject = tutorial("toml")
    assert '[project.entry-points.pi_framework]\ntickets = "tickets_plugin"' in pyproject
    dist_info = site / "tickets_plugin-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: tickets-plugin\nVersion: 0.1.0\n")
    (dist_info / "entry_points.txt").write_text("[pi_framework]\ntickets = tickets_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield importlib.import_module("tickets_plugin")
    sys.modules.pop("tickets_plugin", None)


class TestTutorialSource(SourceContract):
    @pytest.fixture
    def source(self, installed, helpdesk):
        return installed.TicketsSource(str(helpdesk.path))

    @pytest.fixture
    def workspaces(self, helpdesk):
        return "ws-a", "ws-b"

    @pytest.fixture
    def edit(self, helpdesk):
        def edit(workspace_id: str) -> str:
            helpdesk.put(f"{workspace_id}-2", workspace_id, "Cannot log in since Monday", "The reset e-mail never arrives.")
            return f"tickets:{workspace_id}-2"

        return edit

    @pytest.fixture
    def hide(self, helpdesk):
        def close(workspace_id: str) -> str:
            helpdesk.close(f"{workspace_id}-1")
            return f"tickets:{workspace_id}-1"

        return close


def test_pi_plugins_vectorize_and_search_show_the_new_kind(installed, helpdesk, pi_env) -> None:
    pi_env(PI_LOAD_PLUGINS="tickets,search", PI_EMBEDDER="hashing")  # the essential built-ins load too; no Plane
    runner, cli = CliRunner(), build_cli()
    commands = [line.split("$ ", 1)[1] for line in tutorial("console").splitlines() if line.startswith("$ pi ")]
    assert [command.split()[:2] for command in commands] == [["pi", "plugins"], ["pi", "vectorize"], ["pi", "search"]]

    listed = runner.invoke(cli, ["plugins"])
    assert listed.exit_code == 0 and "tickets  (tickets-plugin 0.1.0)\n    source: tickets\n" in listed.output

    vectorized = runner.invoke(cli, ["vectorize", "ws-a", "--now"])
    assert vectorized.exit_code == 0, vectorized.output
    result = json.loads(vectorized.stdout[vectorized.stdout.index("{") :])
    assert result["status"] == "success" and result["documents_total"] == 2

    found = runner.invoke(cli, ["search", "refund", "--workspace", "ws-a", "--kind", "tickets"])
    shown = [
        line for line in tutorial("console").splitlines() if line.startswith(" 1. [tickets]") or line.startswith("    Refund")
    ]
    assert found.exit_code == 0 and found.output.startswith(shown[0].split("  (score")[0]), found.output
    assert shown[1] in found.output
    assert "ws-b" not in found.output

    helpdesk.close("ws-a-1")  # live sync applies it: the closed ticket leaves search
    synced = runner.invoke(cli, ["sync", "ws-a"])
    assert synced.exit_code == 0, synced.output
    assert "Refund never arrived" not in runner.invoke(cli, ["search", "refund", "--workspace", "ws-a"]).output
