"""Issue 11: the OpenSearch sink (a real cluster with the k-NN plugin, lucene engine) returns only what Plane lets the
searching user read — the shared access contract, kNN pre-filter included. The node is ``opensearch_url``
(``PI_TEST_OPENSEARCH_URL``; skipped when unset, a failure under ``PI_REQUIRE_SERVICES=1``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from pi_framework.contract.documents import Chunk
from pi_framework.contract.sinks import SearchQuery
from pi_framework.sinks.opensearch import queries
from pi_framework.sinks.opensearch.sink import OpenSearchSink
from pi_framework.testing.access_matrix import AccessContract

pytestmark = pytest.mark.slow  # a real OpenSearch node


class TestOpenSearchSinkAccess(AccessContract):
    @pytest.fixture
    def sink(self, opensearch_url) -> Iterator[OpenSearchSink]:
        prefix = f"piaccess{uuid.uuid4().hex[:8]}"
        sink = OpenSearchSink(opensearch_url, prefix)
        yield sink
        sink.client.indices.delete(index=f"{prefix}-*")
        sink.close()


def test_an_index_of_an_older_version_gets_the_created_by_field(opensearch_url) -> None:
    """Indices created before issue 11 have no ``created_by`` (strict mapping): ensure_ready adds it, then the guest
    filter works on them."""
    prefix = f"piupgrade{uuid.uuid4().hex[:8]}"
    sink = OpenSearchSink(opensearch_url, prefix)
    try:
        old = queries.index_body(4, "issues")
        del old["mappings"]["properties"]["created_by"]
        sink.client.indices.create(index=f"{prefix}-issues", body=old)
        sink.ensure_ready(4)
        mapping = sink.client.indices.get_mapping(index=f"{prefix}-issues")[f"{prefix}-issues"]["mappings"]
        assert mapping["properties"]["created_by"] == {"type": "keyword"}
        chunk = Chunk(
            id="issues:1#0",
            document_id="issues:1",
            index=0,
            text="guest report",
            content_hash="h",
            source="issues",
            kind="issues",
            workspace_id="w1",
            project_ids=["p1"],
            metadata={"created_by": "u1"},
            vector=[1.0, 0.0, 0.0, 0.0],
        )
        assert sink.write([chunk]).failed == {}
        guest = SearchQuery("w1", text="guest", vector=[1.0, 0.0, 0.0, 0.0], user_id="u1", projects=[], guest_projects=["p1"])
        assert [hit.document_id for hit in sink.search_text(guest)] == ["issues:1"]
        assert [hit.document_id for hit in sink.search_vector(guest)] == ["issues:1"]
        other = SearchQuery("w1", text="guest", vector=[1.0, 0.0, 0.0, 0.0], user_id="u2", projects=[], guest_projects=["p1"])
        assert sink.search_text(other) == [] and sink.search_vector(other) == []
    finally:
        sink.client.indices.delete(index=f"{prefix}-*")
        sink.close()
