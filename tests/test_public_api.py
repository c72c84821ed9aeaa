"""``pi_framework.api`` is the one module plugins import: every name resolves, and the plugins of this repository
import nothing else of the framework (their tests may also use ``pi_framework.testing``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import String, inspect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import pi_framework.api as api
from pi_framework.contract.contributions import BaseSource, Source, source_name_problem
from pi_framework.contract.sinks import Sink
from pi_framework.db import get_database
from pi_framework.db.models import Base, SyncState

ROOT = Path(__file__).parents[1]
PLUGIN_MODULES = sorted(path for path in ROOT.glob("plugins/pi_*/pi_*/**/*.py") if "build" not in path.parts)
PLUGIN_TESTS = sorted(ROOT.glob("plugins/pi_cycles/tests/**/*.py"))


def framework_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import of ``pi_framework`` or a module under it, at any depth of the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "pi_framework"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "pi_framework":
            found += [(node.lineno, node.module)]
            if node.module == "pi_framework":  # ``from pi_framework import runtime`` reaches past the API too
                found += [(node.lineno, f"pi_framework.{alias.name}") for alias in node.names]
    return found


def test_every_plugin_is_found() -> None:
    packages = {path.relative_to(ROOT).parts[1] for path in PLUGIN_MODULES}
    assert {"pi_issues", "pi_pages", "pi_docs", "pi_plans", "pi_maintenance", "pi_chats", "pi_cycles", "pi_comments"} <= packages


@pytest.mark.parametrize("path", PLUGIN_MODULES, ids=lambda path: str(path.relative_to(ROOT)))
def test_plugin_modules_import_only_the_public_api(path: Path) -> None:
    outside = [f"line {line}: {module}" for line, module in framework_imports(path) if module != "pi_framework.api"]
    assert not outside, f"{path.relative_to(ROOT)} imports past pi_framework.api: {outside}"


@pytest.mark.parametrize("path", PLUGIN_TESTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_pi_cycles_tests_use_only_the_api_and_the_testing_kit(path: Path) -> None:
    allowed = ("pi_framework.api", "pi_framework.testing")
    outside = [
        f"line {line}: {module}"
        for line, module in framework_imports(path)
        if not any(module == prefix or module.startswith(prefix + ".") for prefix in allowed)
    ]
    assert not outside, f"{path.relative_to(ROOT)} imports past the API and the testing kit: {outside}"


@pytest.mark.parametrize("name", api.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    assert getattr(api, name) is not None


def test_all_lists_every_lazy_name_once() -> None:
    assert len(api.__all__) == len(set(api.__all__))
    assert set(api._LAZY) <= set(api.__all__)  # noqa: SLF001 - the table behind __getattr__
    with pytest.raises(AttributeError):
        api.no_such_name  # noqa: B018 - the lookup is the test


def test_importing_the_api_costs_little() -> None:
    """A plugin's ``import`` loads the contract only: no database, indexer, Celery or sink module."""
    code = (
        "import sys, pi_framework.api\n"
        "heavy = ['pi_framework.db', 'pi_framework.pipeline.indexer', 'pi_framework.plane.source', 'celery',\n"
        "         'pi_framework.sinks.embedded', 'pi_framework.sync', 'sqlalchemy']\n"
        "print([name for name in heavy if name in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_protocols_list_every_method_the_core_calls() -> None:
    for method in ("iter_documents", "changes", "visible_ids", "visible_versions", "changed_workspaces"):
        assert hasattr(Source, method)
    for method in ("delete_documents", "delete_chunks", "close", "write", "ensure_ready", "health"):
        assert hasattr(Sink, method)
    assert "Embedder" not in vars(__import__("pi_framework.embedding").embedding), "the protocol lives with the API"


def test_base_source_defaults_visible_versions_to_presence() -> None:
    class Notes(BaseSource):
        name = kind = "notes"

        def iter_documents(self, workspace_id):
            return iter(())

        def changes(self, workspace_id, cursor):
            return api.Changes(iter(()), cursor=lambda: {})

        def visible_ids(self, workspace_id):
            return iter(["notes:a", "notes:b"])

    notes = Notes()
    assert isinstance(notes, Source)
    assert list(notes.visible_versions("w")) == [("notes:a", None), ("notes:b", None)]
    assert notes.changed_workspaces(None) == (None, {}), "by default every workspace may have changed"


@pytest.mark.parametrize("name", ["reconcile", "pending-work", "document-retries", "plans", "docs", "chats", "pi_chats"])
def test_a_workspace_source_may_not_take_a_name_another_owner_keeps_rows_under(name: str, pi_registry) -> None:
    class Named(BaseSource):
        kind = "x"

    source = Named()
    source.name = name
    reserved = pi_registry.reserved_state_names  # the bundled plugins reserve theirs
    assert "reserved" in source_name_problem(source, reserved)
    source.scope = "push"  # a push or global source keeps no cursor of (name, workspace)
    assert source_name_problem(source, reserved) is None


def test_a_source_name_with_a_colon_is_refused() -> None:
    class Named(BaseSource):
        name, kind = "a:b", "x"

    assert "':'" in source_name_problem(Named())


def test_the_registry_fails_the_plugin_of_a_reserved_source_name(register_plugin) -> None:
    class Reconcile(BaseSource):
        name, kind = "reconcile", "x"

    class Plugin:
        @api.hookimpl
        def register_sources(self, register, settings):
            register(Reconcile())

        @api.hookimpl
        def register_tasks(self, register):
            register(lambda: None, name="pi.celery_app.reserved_name_task")

    registry = register_plugin(Plugin(), "reserved_name")
    assert "reconcile" not in registry.sources and "pi.celery_app.reserved_name_task" not in registry.tasks
    assert "is reserved" in registry.failures["reserved_name"]


def test_plugin_state_is_namespaced(pi_database) -> None:
    state = api.PluginState("pi_cycles")
    state.save("w1", {"seen": 1})
    assert state.load("w1") == {"seen": 1} and state.all() == {"w1": {"seen": 1}}
    with pi_database.session() as session:
        assert session.get(SyncState, ("plugin:pi_cycles", "w1")) is not None
    state.remove("w1")
    assert state.load("w1") is None


def test_plugin_state_under_a_reserved_name_only(pi_database, register_plugin) -> None:
    class Markers:
        @api.hookimpl
        def register_state_names(self, register):
            register("old-markers")

    register_plugin(Markers(), "markers")
    state = api.PluginState.reserved("old-markers")
    assert state.update("w1", lambda value: {"n": (value or {}).get("n", 0) + 1}) == {"n": 1}
    assert state.update("w1", lambda value: {"n": (value or {}).get("n", 0) + 1}) == {"n": 2}
    [row] = state.rows()
    assert (row.scope, row.value, row.updated_at.tzinfo is not None) == ("w1", {"n": 2}, True)
    with pi_database.session() as session:
        assert session.get(SyncState, ("old-markers", "w1")).cursor == {"n": 2}
    for name in ("reconcile", "pending-work", "issues", "not-reserved"):  # the core's rows, a source's cursors
        with pytest.raises(LookupError, match="not reserved"):
            api.PluginState.reserved(name).load("w1")


def test_a_plugin_table_is_created_with_the_core_s_and_reaches_none_of_them(pi_settings) -> None:
    class Note(api.PluginTable):
        __tablename__ = "test_plugin_notes"
        id: Mapped[str] = mapped_column(String(20), primary_key=True)

    try:
        database = get_database(pi_settings)
        database.ensure_schema()
        assert "test_plugin_notes" in inspect(database.engine).get_table_names()
        assert not set(Base.metadata.tables) & set(api.PluginTable.metadata.tables)
    finally:
        api.PluginTable.metadata.remove(Note.__table__)


@pytest.mark.parametrize("name", api.__all__)
def test_every_exported_name_is_documented(name: str) -> None:
    """The API's docstring says what each name is: exporting one without a line there fails here."""
    assert f"* ``{name}``: " in api.__doc__, f"pi_framework.api exports {name} without a line in its docstring"


def test_no_concrete_sink_or_internal_module_is_exported() -> None:
    assert not {"EmbeddedSink", "OpenSearchSink", "opensearch_index_name"} & set(api.__all__)


def test_no_table_of_the_core_is_exported() -> None:
    """Plugins read the core's state through functions (jobs, ledger, plugin state), never its ORM tables."""
    tables = {name for name in api.__all__ if isinstance(getattr(api, name), type) and issubclass(getattr(api, name), Base)}
    assert tables == set()
    assert api.PluginTable is not Base and issubclass(api.PluginTable, DeclarativeBase)
