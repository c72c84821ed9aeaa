"""pytest fixtures (see :mod:`pi_framework.testing`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pi_framework import runtime
from pi_framework.db import Database, get_database, with_driver
from pi_framework.plugins import PluginInfo, Registry
from pi_framework.settings import Settings, get_settings

#: fixtures that need a service: a test using one (directly or through ``plane_db``) is marked ``slow``
SERVICE_FIXTURES = frozenset({"postgres_admin_url", "postgres_url", "rabbitmq_url", "opensearch_url"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: needs a service or a real worker; `pytest -m 'not slow'` is the unit run")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a service ``slow``, so ``pytest -m "not slow"`` runs the unit tests alone."""
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def require_service(variable: str) -> str:
    """The URL in *variable*; skip the test when unset, unless ``PI_REQUIRE_SERVICES=1`` makes that a failure."""
    url = os.environ.get(variable)
    if url:
        return url
    message = f"{variable} is not set"
    if os.environ.get("PI_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message}, and PI_REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def pi_env(tmp_path, monkeypatch) -> Callable[..., Settings]:
    """Set environment variables for the framework and rebuild settings/registry: ``pi_env(NAME=value)``."""
    monkeypatch.setenv("PI_DATA_DIR", str(tmp_path / "pi-data"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("PI_DATABASE_URL", "CELERY_BROKER_URL", "OPENSEARCH_URL", "PI_SINKS", "PI_LOAD_PLUGINS", "PI_DISABLE_PLUGINS"):
        monkeypatch.delenv(name, raising=False)

    def apply(**values: Any) -> Settings:
        for name, value in values.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, str(value))
        runtime.reset()
        return get_settings()

    apply()
    yield apply
    runtime.reset()


@pytest.fixture
def pi_settings(pi_env) -> Settings:
    """Settings on a throw-away data dir: embedded broker, SQLite PI database, embedded sink."""
    return pi_env()


@pytest.fixture
def pi_database(pi_settings: Settings) -> Database:
    database = get_database(pi_settings)
    database.ensure_schema()
    return database


@pytest.fixture
def pi_registry(pi_settings: Settings) -> Registry:
    return runtime.get_registry(pi_settings)


@pytest.fixture
def register_plugin(pi_registry: Registry) -> Callable[[object, str], Registry]:
    """Register a plugin object that is not installed as a distribution, then re-collect contributions."""

    def register(plugin: object, name: str) -> Registry:
        pi_registry.pm.register(plugin, name=name)
        pi_registry.pm.check_pending()
        pi_registry.plugins[name] = PluginInfo(name, None, None)
        fresh = Registry(settings=pi_registry.settings, pm=pi_registry.pm, plugins=pi_registry.plugins)
        fresh.collect()
        runtime._registry = fresh  # noqa: SLF001 - the testing kit owns the runtime in tests
        return fresh

    return register


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    return require_service("PI_TEST_POSTGRES_URL")


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A new empty PostgreSQL database for this test, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"pi_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(with_driver(postgres_admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    return require_service("PI_TEST_RABBITMQ_URL")


@pytest.fixture(scope="session")
def opensearch_url() -> str:
    """A real OpenSearch node with the k-NN plugin (``PI_TEST_OPENSEARCH_URL``); skipped when unset, a failure under
    ``PI_REQUIRE_SERVICES=1``.

    The node is shared by the whole session (and by concurrent sessions): give every test an index prefix of its own
    (``OpenSearchSink(opensearch_url, f"t{uuid.uuid4().hex[:8]}")``) and delete ``<prefix>-*`` afterwards. pi-framework's
    own suite gets the node from ``tests/support/services.sh`` (run by ``./dev test``), which starts a single-node
    OpenSearch 2.19 built from Maven artifacts (tests/support/opensearch); that node has no native k-NN libraries, so
    only the ``lucene`` engine (``OPENSEARCH_KNN_ENGINE``'s default) works there. Any OpenSearch 2.x with the k-NN
    plugin will do: ``PI_TEST_OPENSEARCH_URL=http://127.0.0.1:9200 pytest``.
    """
    return require_service("PI_TEST_OPENSEARCH_URL")


from pi_framework.testing.plane import plane_db, plane_extra_schema, plane_settings  # noqa: E402,F401 - exposed through the pytest11 plugin
