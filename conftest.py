"""Repository-wide test markers: ``pytest -m "not slow"`` is the unit run (under a minute on two cores).

A test is ``slow`` when it needs a service — PostgreSQL, RabbitMQ or OpenSearch, through the testing kit's
``postgres_url`` / ``rabbitmq_url`` / ``opensearch_url`` fixtures (``plane_db`` and friends use them) — or when its
module marks it (real worker processes). ``./dev test`` and CI run everything.
"""

from __future__ import annotations

import pytest

SERVICE_FIXTURES = frozenset({"postgres_admin_url", "postgres_url", "rabbitmq_url", "opensearch_url"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
