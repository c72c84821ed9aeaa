"""The OpenSearch sink against a real OpenSearch node with the k-NN plugin (``opensearch_url``: PI_TEST_OPENSEARCH_URL,
started by tests/support/services.sh), kNN included; request-level faults come from small local HTTP servers.

Every test works under an index prefix of its own and deletes ``<prefix>-*`` afterwards, so tests (and concurrent
sessions on the same node) never see each other's indices.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from loguru import logger
from opensearchpy import OpenSearch

from pi_framework import runtime
from pi_framework import search as search_module
from pi_framework.cli import build_cli
from pi_framework.contract.documents import Chunk, Document
from pi_framework.contract.sinks import SearchQuery, SinkError
from pi_framework.db import get_database
from pi_framework.embedding import HashingEmbedder
from pi_framework.pipeline.indexer import Indexer
from pi_framework.search import search
from pi_framework.settings import SettingsError, load_settings
from pi_framework.sinks.opensearch import queries
from pi_framework.sinks.opensearch.sink import OpenSearchSink
from pi_framework.testing.sink_contract import SinkContract

DIM = 4


def make_chunk(
    doc: str,
    text: str = "some text",
    *,
    workspace: str | None = "w1",
    kind: str = "issues",
    index: int = 0,
    vector: list[float] | None = None,
    **fields,
) -> Chunk:
    document_id = f"{kind}:{doc}"
    return Chunk(
        id=f"{document_id}#{index}",
        document_id=document_id,
        index=index,
        text=text,
        content_hash=f"hash-{doc}-{index}",
        source=kind,
        kind=kind,
        workspace_id=workspace,
        vector=[1.0, 0.0, 0.0, 0.0] if vector is None else vector,
        **fields,
    )


def ids(hits) -> list[str]:
    return [hit.chunk_id for hit in hits]


@pytest.fixture
def client(opensearch_url) -> Iterator[OpenSearch]:
    client = OpenSearch(hosts=[opensearch_url])
    yield client
    client.close()


@pytest.fixture
def prefix(client) -> Iterator[str]:
    """An index prefix of this test's own; its indices (``<prefix>-*``, ``<prefix>-staging-*`` too) deleted afterwards."""
    name = f"pit{uuid.uuid4().hex[:10]}"
    yield name
    client.indices.delete(index=f"{name}-*", ignore_unavailable=True)


@pytest.fixture
def sink(opensearch_url, prefix) -> Iterator[OpenSearchSink]:
    sink = OpenSearchSink(opensearch_url, prefix, backoff=0)
    sink.ensure_ready(DIM)
    yield sink
    sink.close()


# --------------------------------------------------------------------------- the shared contract, kNN included
class TestOpenSearchContract(SinkContract):
    """The whole sink contract on the real node: text, kNN (lucene engine, filters inside the graph search), deletes."""

    supports_vector_search = True

    @pytest.fixture
    def sink(self, opensearch_url, prefix) -> Iterator[OpenSearchSink]:
        sink = OpenSearchSink(opensearch_url, prefix)
        yield sink
        sink.close()


# --------------------------------------------------------------------------- indices and mapping
def test_write_creates_one_index_per_kind_with_knn_mapping(sink, client, prefix):
    result = sink.write([make_chunk("a"), make_chunk("p", kind="pages"), make_chunk("d", kind="docs", workspace=None)])

    assert sorted(result.written) == ["docs:d#0", "issues:a#0", "pages:p#0"] and result.failed == {}
    mappings = client.indices.get_mapping(index=f"{prefix}-*")
    assert sorted(mappings) == [f"{prefix}-docs", f"{prefix}-issues", f"{prefix}-pages"]
    vector = mappings[f"{prefix}-issues"]["mappings"]["properties"]["vector"]
    assert vector["type"] == "knn_vector" and vector["dimension"] == DIM
    assert {key: vector["method"][key] for key in ("name", "engine", "space_type")} == {
        "name": "hnsw",
        "engine": "lucene",
        "space_type": "cosinesimil",
    }
    settings = client.indices.get_settings(index=f"{prefix}-issues")[f"{prefix}-issues"]["settings"]["index"]
    assert settings["knn"] == "true"
    assert mappings[f"{prefix}-issues"]["mappings"]["dynamic"] == "strict"
    stored = client.get(index=f"{prefix}-docs", id="docs:d#0")["_source"]
    assert "workspace_id" not in stored and stored["vector"] == [1.0, 0.0, 0.0, 0.0]


def test_the_engine_setting_is_what_the_node_is_asked_for(pi_env, opensearch_url, prefix, client):
    """OPENSEARCH_KNN_ENGINE=faiss reaches the create-index request: this test node, which has no native k-NN
    libraries, refuses it by name (HTTP 400); a cluster with faiss creates the index with that engine."""
    pi_env(OPENSEARCH_URL=opensearch_url, OPENSEARCH_INDEX_PREFIX=prefix, OPENSEARCH_KNN_ENGINE="faiss")
    (sink,) = runtime.get_sinks()
    sink.ensure_ready(DIM)

    try:
        result = sink.write([make_chunk("a")])
    except SinkError as error:
        assert f"creating index {prefix}-issues failed" in str(error) and "illegal_argument_exception" in str(error)
        assert "lucene" in str(error)
        assert not client.indices.exists(index=f"{prefix}-issues")
    else:
        assert result.failed == {}
        mapping = client.indices.get_mapping(index=f"{prefix}-issues")[f"{prefix}-issues"]["mappings"]
        assert mapping["properties"]["vector"]["method"]["engine"] == "faiss"


def test_rewriting_a_chunk_overwrites_it(sink):
    sink.write([make_chunk("a", "first version")])
    sink.write([make_chunk("a", "second version")])

    assert sink.count() == 1
    assert [hit.text for hit in sink.search_text(SearchQuery(workspace_id="w1", text="version"))] == ["second version"]


def test_reads_refresh_what_this_process_wrote(sink, monkeypatch, prefix):
    # The node shows writes only after a refresh (every 1 s by default), which reads must ask for, once.
    refreshed: list[str] = []
    real_refresh = sink.client.indices.refresh
    monkeypatch.setattr(
        sink.client.indices, "refresh", lambda index, **kw: refreshed.append(index) or real_refresh(index=index, **kw)
    )
    sink.write([make_chunk("a"), make_chunk("p", kind="pages")])

    assert sink.count() == 2 and sink.count() == 2

    assert refreshed == [f"{prefix}-issues,{prefix}-pages"]


def test_existing_index_with_another_dimension_is_a_clear_error(sink, opensearch_url, prefix):
    sink.write([make_chunk("a")])
    other = OpenSearchSink(opensearch_url, prefix)

    with pytest.raises(SinkError, match=rf"'{prefix}-issues' holds 4-dimensional vectors but the embedder makes 8"):
        other.ensure_ready(8)
    other.close()


def test_index_created_meanwhile_by_a_worker_with_another_dimension_is_refused(opensearch_url, prefix):
    late = OpenSearchSink(opensearch_url, prefix)
    late.ensure_ready(8)  # no index exists yet
    early = OpenSearchSink(opensearch_url, prefix)
    early.ensure_ready(DIM)
    early.write([make_chunk("a")])

    with pytest.raises(SinkError, match="4-dimensional"):
        late.write([make_chunk("b", vector=[0.1] * 8)])
    late.close()
    early.close()


# --------------------------------------------------------------------------- bulk: per-item outcomes
def test_items_the_node_rejects_are_reported_per_item_and_the_rest_is_written(sink, monkeypatch):
    """The node's own mapping errors (a string in the integer field, a vector of the wrong dimension) fail only their
    item; what the sink refuses before sending (NaN, objects JSON cannot encode, lone surrogates) fails only its own."""
    monkeypatch.setattr(queries, "vector_problem", lambda vector, dimension: None)  # let the node judge the dimension
    chunks = [
        make_chunk("good"),
        make_chunk("not-a-number"),
        make_chunk("short", vector=[1.0, 0.0]),
        make_chunk("object-meta", metadata={"state": object()}),
        make_chunk("surrogate", "broken \udc80 text"),
        make_chunk("nan-meta", metadata={"estimate": float("inf")}),
        make_chunk("also-good", index=1),
    ]
    chunks[1].index = "seven"  # type: ignore[assignment] - a string in the integer field chunk_index

    result = sink.write(chunks)

    assert result.written == ["issues:good#0", "issues:also-good#1"]
    assert set(result.failed) == {f"issues:{doc}#0" for doc in ("not-a-number", "short", "object-meta", "surrogate", "nan-meta")}
    assert "HTTP 400 mapper_parsing_exception" in result.failed["issues:not-a-number#0"]
    assert "chunk_index" in result.failed["issues:not-a-number#0"]
    assert "HTTP 400 mapper_parsing_exception" in result.failed["issues:short#0"]
    assert "cannot be encoded as JSON" in result.failed["issues:object-meta#0"]
    assert sink.existing([chunk.id for chunk in chunks]) == {"issues:good#0", "issues:also-good#1"}


def test_a_page_made_private_under_a_flood_stage_block_leaves_search_at_once_and_returns_after(
    sink, client, prefix, pi_env
):
    """The node's flood-stage block (``read_only_allow_delete``) refuses every write *and* every document delete item
    by item (429; only deleting the whole index is allowed). The refused private version fails closed: the page is
    withheld from search at once, not at the next reconcile; after the block lifts the next run indexes it again, for
    its owner only, and the public chunks are gone from the index itself."""
    settings = pi_env(PI_CHUNK_TOKENS=16, PI_CHUNK_OVERLAP=0)
    indexer = Indexer([sink], HashingEmbedder(dimension=DIM), get_database(settings), settings)
    body = " ".join(f"paragraph {n} about the zebra migration plan." for n in range(6))
    public = Document("pages:plan", "pages", "pages", "w1", title="Plan", body=body)
    private = Document("pages:plan", "pages", "pages", "w1", title="Plan", body=body, owner_id="owner-1")
    assert indexer.index([public]).documents_indexed == 1

    def found(user_id: str) -> list[str]:
        hits = search("zebra", "w1", user_id=user_id, all_projects=True, sinks=[sink], mode="text")
        return [hit.document_id for hit in hits]

    assert found("another-member") == ["pages:plan"]
    client.indices.put_settings(index=f"{prefix}-pages", body={"index.blocks.read_only_allow_delete": True})
    try:
        refused = indexer.index([private])
        assert "429" in refused.failed["pages:plan"] and "cluster_block_exception" in refused.failed["pages:plan"]
        assert sink.search_text(SearchQuery("w1", text="zebra", user_id="another-member")), "the block kept the chunks"
        assert found("another-member") == [] and found("owner-1") == [], "withheld from search at once"
    finally:
        client.indices.put_settings(index=f"{prefix}-pages", body={"index.blocks.read_only_allow_delete": None})
    assert indexer.index([private]).documents_indexed == 1
    assert found("another-member") == [] and found("owner-1") == ["pages:plan"]
    assert sink.search_text(SearchQuery("w1", text="zebra", user_id="another-member")) == []


def test_wrong_vectors_are_refused_before_sending(sink):
    result = sink.write([make_chunk("short", vector=[1.0, 0.0]), make_chunk("nan", vector=[float("nan"), 0, 0, 0])])

    assert result.written == [] and "2 dimensions" in result.failed["issues:short#0"]
    assert "NaN" in result.failed["issues:nan#0"]


def test_an_index_of_an_older_version_rejects_what_its_mapping_cannot_hold(client, opensearch_url, prefix):
    # An index created by an older version mapped `key` as a number: the node rejects keys like "ENG-12".
    body = queries.index_body(DIM, "issues")
    body["mappings"]["properties"]["key"] = {"type": "integer"}
    client.indices.create(index=f"{prefix}-issues", body=body)
    sink = OpenSearchSink(opensearch_url, prefix, backoff=0)
    sink.ensure_ready(DIM)

    result = sink.write([make_chunk("good", key="12"), make_chunk("bad", key="ENG-12")])

    assert result.written == ["issues:good#0"]
    assert "mapper_parsing_exception" in result.failed["issues:bad#0"]
    sink.close()


class FlakySink(OpenSearchSink):
    """Real sink whose first bulk pass gets a 429 for chosen ids (what a busy cluster answers per item)."""

    def __init__(self, *args, throttled: set[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.throttled = throttled
        self.passes: list[list[str]] = []

    def _send(self, actions):
        self.passes.append([action["_id"] for action in actions])
        first = len(self.passes) == 1
        passed = [action for action in actions if not (first and action["_id"] in self.throttled)]
        for action in actions:
            if first and action["_id"] in self.throttled:
                yield (
                    False,
                    {
                        "index": {
                            "_index": action["_index"],
                            "_id": action["_id"],
                            "status": 429,
                            "error": {"type": "es_rejected_execution_exception", "reason": "queue full"},
                        }
                    },
                )
        yield from super()._send(passed)


def test_throttled_items_are_retried_with_backoff(opensearch_url, prefix):
    sink = FlakySink(opensearch_url, prefix, backoff=0, throttled={"issues:b#0"})
    sink.ensure_ready(DIM)

    result = sink.write([make_chunk("a"), make_chunk("b")])

    assert sorted(result.written) == ["issues:a#0", "issues:b#0"] and result.failed == {}
    assert sink.passes == [["issues:a#0", "issues:b#0"], ["issues:b#0"]]
    assert sink.existing(["issues:a#0", "issues:b#0"]) == {"issues:a#0", "issues:b#0"}


def test_items_still_throttled_after_the_last_retry_are_failed_not_written(opensearch_url, prefix):
    sink = FlakySink(opensearch_url, prefix, backoff=0, retries=0, throttled={"issues:b#0"})
    sink.ensure_ready(DIM)

    result = sink.write([make_chunk("a"), make_chunk("b")])

    assert result.written == ["issues:a#0"]
    assert "429 es_rejected_execution_exception" in result.failed["issues:b#0"]
    assert sink.existing(["issues:a#0", "issues:b#0"]) == {"issues:a#0"}


# --------------------------------------------------------------------------- request-level faults (local servers)
@pytest.fixture
def dead_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://admin:s3cret-pw@127.0.0.1:{port}"


@pytest.mark.parametrize("operation", ["ensure_ready", "write", "count", "search_text", "delete_workspace", "health"])
def test_unreachable_server_is_a_sink_error_without_credentials(dead_url, operation):
    sink = OpenSearchSink(dead_url, "pi", timeout=2)
    sink._dimension = DIM  # noqa: SLF001 - skip ensure_ready for the other operations
    calls = {
        "ensure_ready": lambda: sink.ensure_ready(DIM),
        "write": lambda: sink.write([make_chunk("a")]),
        "count": lambda: sink.count("w1"),
        "search_text": lambda: sink.search_text(SearchQuery(workspace_id="w1", text="x")),
        "delete_workspace": lambda: sink.delete_workspace("w1"),
        "health": sink.health,
    }

    with pytest.raises(SinkError) as error:
        calls[operation]()

    assert "s3cret-pw" not in str(error.value) and "admin:***@127.0.0.1" in str(error.value)


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def failing_server(status: int, error: str, reason: str) -> tuple[str, callable]:
    """A local server answering every request with *status* and an OpenSearch-shaped error body; returns (url, stop)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    body = f'{{"error":{{"type":"{error}","reason":"{reason}"}},"status":{status}}}'.encode()

    class Handler(BaseHTTPRequestHandler):
        def _fail(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _fail

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return f"http://127.0.0.1:{server.server_address[1]}", stop


def test_timeout_is_a_sink_error(silent_url):
    sink = OpenSearchSink(silent_url, "pi", timeout=0.3)

    with pytest.raises(SinkError, match="ConnectionTimeout"):
        sink.ensure_ready(DIM)


@pytest.mark.parametrize(
    ("status", "error", "reason"),
    [(500, "internal_error", "disk on fire"), (429, "es_rejected_execution_exception", "rejected execution of bulk")],
)
def test_a_failed_bulk_request_is_a_sink_error(status, error, reason, caplog):
    url, stop = failing_server(status, error, reason)
    try:
        sink = OpenSearchSink(url.replace("//", "//admin:s3cret-pw@"), "pi")
        sink._dimension = DIM  # noqa: SLF001 - the server would fail ensure_ready too
        sink._ready.add("pi-issues")  # noqa: SLF001

        with pytest.raises(SinkError, match=rf"bulk request failed: TransportError {status}: {error}: {reason}") as failure:
            sink.write([make_chunk("a")])
        assert "s3cret-pw" not in str(failure.value) and "s3cret-pw" not in caplog.text
        sink.bulk_chunk_size = 1  # several requests in flight: the same error
        with pytest.raises(SinkError, match=rf"bulk request failed: TransportError {status}: {error}: {reason}"):
            sink.write([make_chunk("a"), make_chunk("b"), make_chunk("c")])
    finally:
        stop()


# --------------------------------------------------------------------------- sink-level search
def test_search_is_filtered_by_workspace_privacy_and_kind(sink):
    sink.write(
        [
            make_chunk("mine", "login page crashes", workspace="w1", title="Login crash"),
            make_chunk("theirs", "login page crashes", workspace="w2", title="Login crash"),
            make_chunk("guide", "how login works", kind="docs", workspace=None, title="Login guide"),
            make_chunk("note", "login secrets", kind="pages", workspace="w1", owner_id="u1"),
        ]
    )

    def found(**query) -> set[str]:
        return set(ids(sink.search_text(SearchQuery(text="login", **query))))

    assert found(workspace_id="w1") == {"issues:mine#0", "docs:guide#0"}
    assert found(workspace_id="w1", user_id="u1") == {"issues:mine#0", "docs:guide#0", "pages:note#0"}
    assert found(workspace_id="w1", user_id="u2") == {"issues:mine#0", "docs:guide#0"}
    assert found(workspace_id="w2") == {"issues:theirs#0", "docs:guide#0"}
    assert found(workspace_id="w3") == {"docs:guide#0"}
    assert found(workspace_id="w1", kinds=["docs"]) == {"docs:guide#0"}
    assert found(workspace_id="w1", kinds=["unknown"]) == set()
    assert found(workspace_id="w1 OR workspace_id:w2") == {"docs:guide#0"}


def test_text_search_ranks_the_best_match_first_and_respects_the_limit(sink):
    sink.write(
        [
            make_chunk("other", "the weather is nice today", title="Weather"),
            make_chunk("best", "export to csv fails with an encoding error on csv files", title="CSV export fails"),
            make_chunk("some", "we could add csv to the roadmap", title="Roadmap"),
            make_chunk("key", "unrelated body", title="Something", key="ENG-12"),
        ]
    )

    hits = sink.search_text(SearchQuery(workspace_id="w1", text="csv export", limit=2))

    assert ids(hits) == ["issues:best#0", "issues:some#0"]
    assert hits[0].score >= hits[1].score and hits[0].title == "CSV export fails" and hits[0].kind == "issues"
    assert ids(sink.search_text(SearchQuery(workspace_id="w1", text="ENG-12")))[0] == "issues:key#0"
    assert sink.search_text(SearchQuery(workspace_id="w1", text="   ")) == []


def test_knn_returns_the_nearest_neighbours_that_pass_the_filters(sink):
    sink.write(
        [
            make_chunk("near", vector=[1.0, 0.1, 0.0, 0.0]),
            make_chunk("far", vector=[0.0, 0.0, 1.0, 0.0]),
            make_chunk("middle", vector=[1.0, 1.0, 0.0, 0.0]),
            make_chunk("other-ws", workspace="w2", vector=[1.0, 0.0, 0.0, 0.0]),
            make_chunk("private", owner_id="u2", vector=[1.0, 0.0, 0.0, 0.0]),
            make_chunk("doc", kind="docs", workspace=None, vector=[0.0, 1.0, 0.0, 0.0]),
        ]
    )
    # The nearest vectors of all (other-ws, private) are filtered out inside the graph search, so k=2 still gives two.
    two = sink.search_vector(SearchQuery(workspace_id="w1", vector=[1.0, 0.0, 0.0, 0.0], user_id="u1", limit=2))
    assert ids(two) == ["issues:near#0", "issues:middle#0"]
    assert two[0].score > two[1].score

    hits = sink.search_vector(SearchQuery(workspace_id="w1", vector=[1.0, 0.0, 0.0, 0.0], user_id="u1", limit=10))

    assert set(ids(hits)) == {"issues:near#0", "issues:middle#0", "issues:far#0", "docs:doc#0"}
    assert ids(sink.search_vector(SearchQuery(workspace_id="w1", vector=[1.0, 0.0, 0.0, 0.0], kinds=["docs"]))) == ["docs:doc#0"]
    assert "issues:private#0" in ids(sink.search_vector(SearchQuery(workspace_id="w1", vector=[1, 0, 0, 0], user_id="u2")))
    assert ids(sink.search_vector(SearchQuery(workspace_id="w9", vector=[1.0, 0.0, 0.0, 0.0]))) == ["docs:doc#0"]


def test_a_vector_query_of_the_wrong_dimension_is_a_sink_error_naming_the_cause(sink):
    sink.write([make_chunk("a")])

    with pytest.raises(SinkError, match="vector search failed: .*invalid dimension: 3"):
        sink.search_vector(SearchQuery(workspace_id="w1", vector=[1.0, 0.0, 0.0]))


# --------------------------------------------------------------------------- deletes
def test_delete_workspace_removes_only_that_workspace(sink):
    sink.write(
        [
            make_chunk("a1", workspace="w1"),
            make_chunk("a2", workspace="w1", index=1),
            make_chunk("p1", workspace="w1", kind="pages"),
            make_chunk("b1", workspace="w2"),
            make_chunk("p2", workspace="w2", kind="pages"),
            make_chunk("d", workspace=None, kind="docs"),
        ]
    )
    assert (sink.count("w1"), sink.count("w2"), sink.count(), sink.count(kind="pages"), sink.count("w1", "issues")) == (
        3,
        2,
        6,
        2,
        2,
    )

    assert sink.delete_workspace("w2", kind="pages") == 1
    assert sink.delete_workspace("w1") == 3

    assert (sink.count("w1"), sink.count("w2"), sink.count()) == (0, 1, 2)
    assert sink.existing(["issues:b1#0", "docs:d#0", "issues:a1#0"]) == {"issues:b1#0", "docs:d#0"}
    assert sink.delete_workspace("w9") == 0 and sink.delete_workspace("w2", kind="nothing") == 0
    assert ids(sink.search_vector(SearchQuery(workspace_id="w1", vector=[1.0, 0.0, 0.0, 0.0]))) == ["docs:d#0"]


def test_delete_chunks_by_id_across_kinds(sink):
    sink.write([make_chunk("a"), make_chunk("a", index=1), make_chunk("p", kind="pages")])

    sink.delete_chunks(["issues:a#1", "pages:p#0", "issues:never-written#0"])

    assert sink.existing(["issues:a#0", "issues:a#1", "pages:p#0"]) == {"issues:a#0"}
    assert sink.count() == 1


def test_delete_documents_removes_every_chunk_of_them(sink):
    sink.write(
        [make_chunk("a"), make_chunk("a", index=1), make_chunk("a", index=7), make_chunk("b"), make_chunk("p", kind="pages")]
    )

    assert sink.delete_documents(["issues:a", "pages:p", "issues:unknown"]) == 4

    assert sink.existing(["issues:a#0", "issues:a#1", "issues:a#7", "issues:b#0", "pages:p#0"]) == {"issues:b#0"}
    assert ids(sink.search_vector(SearchQuery(workspace_id="w1", vector=[1.0, 0.0, 0.0, 0.0]))) == ["issues:b#0"]
    assert sink.delete_documents([]) == 0


def test_another_prefix_is_untouched(opensearch_url, prefix, sink):
    staging = OpenSearchSink(opensearch_url, f"{prefix}-staging")
    staging.ensure_ready(DIM)
    staging.write([make_chunk("a")])
    sink.write([make_chunk("a")])

    assert sink.delete_workspace("w1") == 1
    sink.delete_chunks(["issues:a#0"])

    assert staging.count("w1") == 1 and sink.count() == 0
    assert sink.search_text(SearchQuery(workspace_id="w1", text="some text")) == []
    assert sink.search_vector(SearchQuery(workspace_id="w1", vector=[1.0, 0.0, 0.0, 0.0])) == []
    assert sink.existing(["issues:a#0"]) == set() and staging.existing(["issues:a#0"]) == {"issues:a#0"}
    staging.close()


def requests_of(sink: OpenSearchSink, monkeypatch, delay: float = 0.0) -> tuple[list[str], list[int]]:
    """Record every HTTP request *sink* makes (``METHOD path``) and the most requests in flight at once."""
    made: list[str] = []
    in_flight = [0, 0]  # now, most
    lock = threading.Lock()
    real = sink.client.transport.perform_request

    def perform(method, url, *args, **kwargs):
        with lock:
            made.append(f"{method} {url}")
            in_flight[0] += 1
            in_flight[1] = max(in_flight)
        try:
            time.sleep(delay)
            return real(method, url, *args, **kwargs)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(sink.client.transport, "perform_request", perform)
    return made, in_flight


def test_a_search_is_one_request_to_this_prefixs_indices(sink, monkeypatch, prefix):
    """No ``GET _alias`` before a query: the node resolves ``<prefix>-*`` minus other prefixes' indices itself."""
    sink.write([make_chunk("a", "login crash"), make_chunk("p", "login page", kind="pages")])
    assert sink.count() == 2  # the refresh of this process's writes is behind us
    made, _ = requests_of(sink, monkeypatch)

    assert ids(sink.search_text(SearchQuery(workspace_id="w1", text="login", kinds=["pages"]))) == ["pages:p#0"]
    assert len(sink.search_vector(SearchQuery(workspace_id="w1", vector=[1.0, 0.0, 0.0, 0.0]))) == 2
    assert sink.existing(["issues:a#0", "pages:p#0", "docs:x#0"]) == {"issues:a#0", "pages:p#0"}
    assert sink.count("w1") == 2

    assert made == [
        f"POST /{prefix}-pages/_search",
        f"POST /{prefix}-*,-{prefix}-*-*/_search",
        f"POST /{prefix}-*,-{prefix}-*-*/_search",
        f"POST /{prefix}-*,-{prefix}-*-*/_count",
    ]
    assert sink.search_text(SearchQuery(workspace_id="w1", text="login", kinds=["docs", "???"])) == []


def test_a_large_write_keeps_several_bulk_requests_in_flight(opensearch_url, prefix, monkeypatch):
    sink = OpenSearchSink(opensearch_url, prefix, bulk_chunk_size=20, bulk_concurrency=2)
    sink.ensure_ready(DIM)
    made, in_flight = requests_of(sink, monkeypatch, delay=0.05)
    chunks = [make_chunk(f"d{i}", f"text {i}", vector=[1.0, float(i % 5), 0.0, 0.0]) for i in range(100)]
    chunks[37].index = "seven"  # type: ignore[assignment] - rejected by the node: only its own item fails

    result = sink.write(chunks)

    assert made.count("POST /_bulk") == 5 and in_flight[1] == 2
    assert sorted(result.written) == sorted(chunk.id for chunk in chunks if chunk.id != "issues:d37#0")
    assert "mapper_parsing_exception" in result.failed["issues:d37#0"]
    assert len(sink.existing([chunk.id for chunk in chunks])) == 99
    sink.close()


def test_empty_index_set_answers_without_error(sink):
    assert sink.count() == 0 and sink.existing(["x#0"]) == set() and sink.delete_workspace("w1") == 0
    assert sink.search_text(SearchQuery(workspace_id="w1", text="x")) == []
    assert sink.search_vector(SearchQuery(workspace_id="w1", vector=[1.0, 0.0, 0.0, 0.0])) == []
    sink.delete_chunks(["x#0"])
    assert sink.write([]).written == []


def test_health_reports_indices_and_counts(sink, prefix):
    sink.write([make_chunk("a"), make_chunk("b")])
    assert sink.count() == 2  # a read: this process's writes are refreshed

    health = sink.health()

    assert health["indices"] == {f"{prefix}-issues": 2} and health["status"] in {"green", "yellow"}


def test_ten_thousand_chunks_are_paged_through_bulk_and_id_batches(sink):
    chunks = [make_chunk(f"d{i}", f"text {i}", vector=[1.0, float(i % 7), 0.5, 0.0]) for i in range(10_000)]

    started = time.perf_counter()
    result = sink.write(chunks)
    elapsed = time.perf_counter() - started

    assert len(result.written) == 10_000 and not result.failed
    assert sink.count("w1") == 10_000
    assert len(sink.existing([chunk.id for chunk in chunks])) == 10_000
    sink.delete_chunks([chunk.id for chunk in chunks[:2500]])
    assert sink.count("w1") == 7_500
    print(f"10,000 chunks written in {elapsed:.2f}s ({10_000 / elapsed:.0f} chunks/s)")


# --------------------------------------------------------------------------- the plugin
def test_plugin_is_the_default_sink_when_opensearch_url_is_set(pi_env, opensearch_url, prefix):
    pi_env(OPENSEARCH_URL=opensearch_url, OPENSEARCH_INDEX_PREFIX=prefix)

    (sink,) = runtime.get_sinks()

    assert isinstance(sink, OpenSearchSink) and sink.prefix == prefix and sink.knn_engine == "lucene"


def test_plugin_without_url_says_what_is_missing(pi_env):
    pi_env(PI_SINKS="opensearch")

    with pytest.raises(SinkError, match="OPENSEARCH_URL"):
        runtime.get_sinks()


def test_an_unknown_knn_engine_is_one_plain_settings_line(pi_env):
    with pytest.raises(SettingsError) as error:
        load_settings(OPENSEARCH_KNN_ENGINE="nmslib")

    assert str(error.value) == "OPENSEARCH_KNN_ENGINE='nmslib' is invalid: expected 'lucene' or 'faiss'"


# --------------------------------------------------------------------------- search(): kNN + BM25 + fusion
WS_A, WS_B, WS_C = "ws-a", "ws-b", "ws-c"


@pytest.fixture
def hybrid(pi_env, opensearch_url, prefix) -> OpenSearchSink:
    """Documents indexed through the default runtime (hashing embedder, 384 dimensions, this sink chosen by
    OPENSEARCH_URL), none of them project-scoped (the project-membership matrix is tests/test_access_opensearch.py)."""
    pi_env(OPENSEARCH_URL=opensearch_url, OPENSEARCH_INDEX_PREFIX=prefix, PI_EMBEDDER="hashing", PLANE_DATABASE_URL=None)
    get_database().ensure_schema()
    issue = {"source": "issues", "kind": "issues"}
    documents = [
        Document(
            id="issues:a-login", workspace_id=WS_A, title="Login page crashes", body="The login page crashes on submit.", **issue
        ),
        Document(id="issues:a-csv", workspace_id=WS_A, title="Export to CSV", body="Add a CSV export of the list.", **issue),
        Document(
            id="issues:b-login", workspace_id=WS_B, title="Login page crashes", body="The login page crashes on submit.", **issue
        ),
        Document(id="docs:auth", source="docs", kind="docs", workspace_id=None, title="Authentication", body="Login with SAML."),
        Document(
            id="chats:u1-login",
            source="chats",
            kind="chats",
            workspace_id=WS_A,
            owner_id="u1",
            title="Chat",
            body="why does the login page crash",
        ),
    ]
    stats = Indexer().index(documents)
    assert stats.failed == {} and stats.documents_indexed == 5
    (sink,) = runtime.get_sinks()
    return sink


def found(query: str, workspace_id: str, mode: str, **kwargs) -> list[str]:
    return [hit.document_id for hit in search(query, workspace_id, mode=mode, limit=10, **kwargs)]


@pytest.mark.parametrize("mode", ["hybrid", "text", "vector"])
def test_search_is_filtered_by_workspace_and_privacy_in_every_mode(hybrid, mode):
    failures_before = sum(search_module.vector_query_failures.values())
    query = "login page crashes"

    anonymous = found(query, WS_A, mode)
    owner = found(query, WS_A, mode, user_id="u1")
    stranger = found(query, WS_A, mode, user_id="u2")
    other_workspace = found(query, WS_B, mode, user_id="u1")
    empty_workspace = found(query, WS_C, mode, user_id="u1")

    assert anonymous[0] == "issues:a-login" and owner[0] == "issues:a-login" and other_workspace[0] == "issues:b-login"
    for hits in (anonymous, owner, stranger, other_workspace, empty_workspace):
        assert len(hits) == len(set(hits)), "one hit per document"
    assert not {"issues:b-login", "chats:u1-login"} & set(anonymous + stranger)
    assert "chats:u1-login" in owner and "issues:b-login" not in owner
    assert not {"issues:a-login", "issues:a-csv", "chats:u1-login"} & set(other_workspace)
    assert set(empty_workspace) <= {"docs:auth"}
    if mode != "text":  # kNN answers with the nearest allowed chunks, relevant or not: everything this user may see
        assert set(anonymous) == {"issues:a-login", "issues:a-csv", "docs:auth"}
        assert set(owner) == {"issues:a-login", "issues:a-csv", "docs:auth", "chats:u1-login"}
        assert set(other_workspace) == {"issues:b-login", "docs:auth"} and empty_workspace == ["docs:auth"]
    assert sum(search_module.vector_query_failures.values()) == failures_before, "kNN answered on the real node"


def test_hybrid_fuses_knn_and_bm25(hybrid):
    vector_only = found("csv export", WS_A, "vector")
    text_only = found("csv export", WS_A, "text")

    assert text_only == ["issues:a-csv"]
    assert vector_only[0] == "issues:a-csv" and len(vector_only) == 3
    hits = search("csv export", WS_A, mode="hybrid", limit=10)
    assert [hit.document_id for hit in hits][0] == "issues:a-csv"
    assert hits[0].score == pytest.approx(2 / 61), "first in both lists: 1/(60+1) twice"


def test_a_failed_vector_query_is_an_error_not_a_silent_fallback(hybrid, monkeypatch):
    """The search side's embedder no longer matches the index (8 dimensions against 384): the node answers HTTP 400.
    Hybrid search answers from BM25, logs ERROR with the node's reason and counts it; vector-only search raises."""
    monkeypatch.setattr(runtime, "embedder_of", lambda generation: HashingEmbedder(dimension=8))
    errors: list[str] = []
    handler = logger.add(errors.append, level="ERROR", format="{message}")
    before = search_module.vector_query_failures["opensearch"]
    try:
        hits = found("csv export", WS_A, "hybrid")
    finally:
        logger.remove(handler)

    assert hits == ["issues:a-csv"]
    assert search_module.vector_query_failures["opensearch"] == before + 1
    (error,) = errors
    assert "sink opensearch rejected the vector query" in error and "invalid dimension: 8" in error
    with pytest.raises(SinkError, match="invalid dimension: 8"):
        search("csv export", WS_A, mode="vector")


def test_pipeline_and_pi_search_end_to_end(pi_env, opensearch_url, prefix):
    """Real model, real indexer and ledger, this sink chosen by OPENSEARCH_URL, then ``pi search`` (kNN + BM25)."""
    pi_env(OPENSEARCH_URL=opensearch_url.replace("//", "//admin:s3cret-pw@"), OPENSEARCH_INDEX_PREFIX=prefix)
    get_database().ensure_schema()
    issue = {"source": "issues", "kind": "issues", "workspace_id": "ws-a"}
    documents = [
        Document(
            id="issues:1",
            title="Login page crashes on Safari",
            body="<p>Opening the login page crashes.</p>",
            body_format="html",
            key="ENG-1",
            **issue,
        ),
        Document(id="issues:2", title="Export to CSV", body="Add a CSV export of the issue list.", key="ENG-2", **issue),
        Document(
            id="issues:3", title="Login crash", body="login crash login crash", key="OPS-1", **{**issue, "workspace_id": "ws-b"}
        ),
        Document(
            id="docs:plane/docs:auth.md",
            source="docs",
            kind="docs",
            workspace_id=None,
            title="Authentication",
            body="Configure login with SAML.",
        ),
    ]
    indexer = Indexer()

    stats = indexer.index(documents)

    assert stats.failed == {} and stats.documents_indexed == 4
    (sink,) = indexer.sinks
    assert (sink.count("ws-a"), sink.count("ws-b"), sink.count(kind="docs")) == (2, 1, 1)
    result = CliRunner().invoke(build_cli(), ["search", "login crash", "--workspace", "ws-a"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line[:3].strip().rstrip(".").isdigit()]
    assert "ENG-1 · Login page crashes on Safari" in lines[0] and "[docs] Authentication" in lines[1]
    assert "OPS-1" not in result.output and "s3cret-pw" not in result.output
    semantic = search("the browser fails when signing in", "ws-a", mode="vector", limit=1)
    assert [hit.document_id for hit in semantic] == ["issues:1"], "kNN with the real model: meaning, not words"

    assert indexer.index(documents).chunks_embedded == 0
    indexer.delete_documents(["issues:1"])
    assert sink.count("ws-a") == 1
    assert [hit.document_id for hit in search("login crash", "ws-a", mode="text")] == ["docs:plane/docs:auth.md"]
    assert "issues:1" not in {hit.document_id for hit in search("login crash", "ws-a", mode="hybrid")}
