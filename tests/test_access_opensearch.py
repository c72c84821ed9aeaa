"""Issue 11: the OpenSearch sink (a real cluster with the k-NN plugin, lucene engine) returns only what Plane lets the
searching user read — the shared access contract, kNN pre-filter included. Needs ``PI_TEST_OPENSEARCH_URL``; a failure
instead of a skip under ``PI_REQUIRE_SERVICES=1``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from pi_framework.sinks.opensearch.sink import OpenSearchSink
from pi_framework.testing.access_matrix import AccessContract
from pi_framework.testing.fixtures import require_service


class TestOpenSearchSinkAccess(AccessContract):
    @pytest.fixture
    def sink(self) -> Iterator[OpenSearchSink]:
        url = require_service("PI_TEST_OPENSEARCH_URL")
        prefix = f"piaccess{uuid.uuid4().hex[:8]}"
        sink = OpenSearchSink(url, prefix)
        yield sink
        sink.client.indices.delete(index=f"{prefix}-*")
        sink.close()
