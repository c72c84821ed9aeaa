"""The OpenSearch sink against osmem-server (an in-memory OpenSearch; no kNN), and against a real cluster for kNN."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from opensearchpy import OpenSearch

from pi_framework import runtime
from pi_framework.cli import build_cli
from pi_framework.db import get_database
from pi_framework.pipeline.documents import Chunk, Document
from pi_framework.pipeline.indexer import Indexer
from pi_framework.search import search
from pi_framework.sinks.base import SearchQuery, SinkError
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


@pytest.fixture
def sink(osmem_url) -> Iterator[OpenSearchSink]:
    sink = OpenSearchSink(osmem_url, "pi", backoff=0)
    sink.ensure_ready(DIM)
    yield sink
    sink.close()


def ids(hits) -> list[str]:
    return [hit.chunk_id for hit in hits]


def test_write_creates_one_index_per_kind_with_knn_mapping(sink, osmem_url):
    result = sink.write([make_chunk("a"), make_chunk("p", kind="pages"), make_chunk("d", kind="docs", workspace=None)])

    assert sorted(result.written) == ["docs:d#0", "issues:a#0", "pages:p#0"] and result.failed == {}
    client = OpenSearch(hosts=[osmem_url])
    mappings = client.indices.get_mapping(index="pi-*")
    assert sorted(mappings) == ["pi-docs", "pi-issues", "pi-pages"]
    vector = mappings["pi-issues"]["mappings"]["properties"]["vector"]
    assert vector["dimension"] == DIM and vector["method"] == {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"}
    stored = client.get(index="pi-docs", id="docs:d#0")["_source"]
    assert "workspace_id" not in stored


def test_rewriting_a_chunk_overwrites_it(sink):
    sink.write([make_chunk("a", "first version")])
    sink.write([make_chunk("a", "second version")])

    assert sink.count() == 1
    assert [hit.text for hit in sink.search_text(SearchQuery(workspace_id="w1", text="version"))] == ["second version"]


def test_reads_refresh_what_this_process_wrote(sink, monkeypatch):
    # osmem shows writes at once; a real cluster only after a refresh, which reads must ask for.
    refreshed: list[str] = []
    real_refresh = sink.client.indices.refresh
    monkeypatch.setattr(
        sink.client.indices, "refresh", lambda index, **kw: refreshed.append(index) or real_refresh(index=index, **kw)
    )
    sink.write([make_chunk("a"), make_chunk("p", kind="pages")])

    assert sink.count() == 2 and sink.count() == 2

    assert refreshed == ["pi-issues,pi-pages"]


def test_existing_index_with_another_dimension_is_a_clear_error(sink, osmem_url):
    sink.write([make_chunk("a")])
    other = OpenSearchSink(osmem_url, "pi")

    with pytest.raises(SinkError, match=r"'pi-issues' holds 4-dimensional vectors but the embedder makes 8"):
        other.ensure_ready(8)


def test_index_created_meanwhile_by_a_worker_with_another_dimension_is_refused(osmem_url):
    late = OpenSearchSink(osmem_url, "pi")
    late.ensure_ready(8)  # no index exists yet
    early = OpenSearchSink(osmem_url, "pi")
    early.ensure_ready(DIM)
    early.write([make_chunk("a")])

    with pytest.raises(SinkError, match="4-dimensional"):
        late.write([make_chunk("b", vector=[0.1] * 8)])


def test_items_the_mapping_rejects_are_reported_per_item_and_the_rest_is_written(osmem_url):
    # An index created by an older version mapped `key` as a number: OpenSearch rejects keys like "ENG-12".
    body = queries.index_body(DIM, "issues")
    body["mappings"]["properties"]["key"] = {"type": "integer"}
    OpenSearch(hosts=[osmem_url]).indices.create(index="pi-issues", body=body)
    sink = OpenSearchSink(osmem_url, "pi", backoff=0)
    sink.ensure_ready(DIM)
    chunks = [
        make_chunk("good", key="12"),
        make_chunk("bad", key="ENG-12"),
        make_chunk("short", vector=[1.0, 0.0]),
        make_chunk("nan", vector=[float("nan"), 0.0, 0.0, 0.0]),
        make_chunk("nan-meta", metadata={"estimate": float("inf")}),
        make_chunk("object-meta", metadata={"state": object()}),
        make_chunk("surrogate", "broken \udc80 text"),
        make_chunk("also-good"),
    ]

    result = sink.write(chunks)

    assert result.written == ["issues:good#0", "issues:also-good#0"]
    assert set(result.failed) == {f"issues:{doc}#0" for doc in ("bad", "short", "nan", "nan-meta", "object-meta", "surrogate")}
    assert "mapper_parsing_exception" in result.failed["issues:bad#0"]
    assert "2 dimensions" in result.failed["issues:short#0"]
    assert sink.existing([chunk.id for chunk in chunks]) == {"issues:good#0", "issues:also-good#0"}


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


def test_throttled_items_are_retried_with_backoff(osmem_url):
    sink = FlakySink(osmem_url, "pi", backoff=0, throttled={"issues:b#0"})
    sink.ensure_ready(DIM)

    result = sink.write([make_chunk("a"), make_chunk("b")])

    assert sorted(result.written) == ["issues:a#0", "issues:b#0"] and result.failed == {}
    assert sink.passes == [["issues:a#0", "issues:b#0"], ["issues:b#0"]]


def test_items_still_throttled_after_the_last_retry_are_failed_not_written(osmem_url):
    sink = FlakySink(osmem_url, "pi", backoff=0, retries=0, throttled={"issues:b#0"})
    sink.ensure_ready(DIM)

    result = sink.write([make_chunk("a"), make_chunk("b")])

    assert result.written == ["issues:a#0"]
    assert "429 es_rejected_execution_exception" in result.failed["issues:b#0"]


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


@pytest.fixture
def failing_url() -> Iterator[str]:
    """A server that answers every request with HTTP 500."""

    class Handler(BaseHTTPRequestHandler):
        def _fail(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b'{"error":{"type":"internal_error","reason":"disk on fire"},"status":500}'
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_HEAD = _fail

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_timeout_is_a_sink_error(silent_url):
    sink = OpenSearchSink(silent_url, "pi", timeout=0.3)

    with pytest.raises(SinkError, match="ConnectionTimeout"):
        sink.ensure_ready(DIM)


def test_server_error_on_bulk_is_a_sink_error(failing_url, caplog):
    sink = OpenSearchSink(failing_url.replace("//", "//admin:s3cret-pw@"), "pi")
    sink._dimension = DIM  # noqa: SLF001 - the server would fail ensure_ready too
    sink._ready.add("pi-issues")  # noqa: SLF001

    with pytest.raises(SinkError, match=r"bulk request failed: TransportError 500: internal_error: disk on fire"):
        sink.write([make_chunk("a")])
    assert "s3cret-pw" not in caplog.text


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
    assert sink.delete_documents([]) == 0


def test_another_prefix_is_untouched(osmem_url, sink):
    staging = OpenSearchSink(osmem_url, "pi-staging")
    staging.ensure_ready(DIM)
    staging.write([make_chunk("a")])
    sink.write([make_chunk("a")])

    assert sink.delete_workspace("w1") == 1
    sink.delete_chunks(["issues:a#0"])

    assert staging.count("w1") == 1 and sink.count() == 0


def test_empty_index_set_answers_without_error(sink):
    assert sink.count() == 0 and sink.existing(["x#0"]) == set() and sink.delete_workspace("w1") == 0
    assert sink.search_text(SearchQuery(workspace_id="w1", text="x")) == []
    sink.delete_chunks(["x#0"])
    assert sink.write([]).written == []


def test_health_reports_indices_and_counts_with_redacted_url(osmem_url, sink):
    sink.write([make_chunk("a"), make_chunk("b")])

    health = sink.health()

    assert health["indices"] == {"pi-issues": 2} and health["status"] in {"green", "yellow"}


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
    print(f"10,000 chunks written in {elapsed:.2f}s")


def test_plugin_is_the_default_sink_when_opensearch_url_is_set(pi_env, osmem_url):
    pi_env(OPENSEARCH_URL=osmem_url, OPENSEARCH_INDEX_PREFIX="plugintest")

    (sink,) = runtime.get_sinks()

    assert isinstance(sink, OpenSearchSink) and sink.prefix == "plugintest"


def test_plugin_without_url_says_what_is_missing(pi_env):
    pi_env(PI_SINKS="opensearch")

    with pytest.raises(SinkError, match="OPENSEARCH_URL"):
        runtime.get_sinks()


def test_knn_query_is_rejected_by_osmem_as_a_sink_error(sink):
    sink.write([make_chunk("a")])

    with pytest.raises(SinkError, match="vector search failed"):
        sink.search_vector(SearchQuery(workspace_id="w1", vector=[1.0, 0.0, 0.0, 0.0]))


def test_pipeline_and_pi_search_end_to_end(pi_env, osmem_url):
    """Real model, real indexer and ledger, this sink chosen by OPENSEARCH_URL, then ``pi search`` (BM25 on osmem)."""
    pi_env(OPENSEARCH_URL=osmem_url.replace("//", "//admin:s3cret-pw@"), OPENSEARCH_INDEX_PREFIX="e2e")
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
    assert "ENG-1 · Login page crashes on Safari" in lines[0] and "[docs] Authentication" in lines[1] and len(lines) == 2
    assert "s3cret-pw" not in result.output

    assert indexer.index(documents).chunks_embedded == 0
    indexer.delete_documents(["issues:1"])
    assert sink.count("ws-a") == 1
    assert [hit.document_id for hit in search("login crash", "ws-a", mode="text")] == ["docs:plane/docs:auth.md"]


class TestOpenSearchContract(SinkContract):
    """The shared sink contract on osmem-server, which cannot answer kNN queries (those run on a real cluster below)."""

    supports_vector_search = False

    @pytest.fixture
    def sink(self, osmem_url) -> Iterator[OpenSearchSink]:
        sink = OpenSearchSink(osmem_url, "pi")
        yield sink
        sink.close()


# --------------------------------------------------------------------------- real cluster (kNN)
@pytest.fixture
def knn_url() -> str:
    url = os.environ.get("PI_TEST_OPENSEARCH_KNN_URL")
    if not url:
        pytest.skip("PI_TEST_OPENSEARCH_KNN_URL is not set (kNN needs a real OpenSearch cluster; osmem-server has no kNN)")
    return url


def unique_sink(url: str) -> Iterator[OpenSearchSink]:
    """A sink on a real cluster under a prefix of its own, whose indices are deleted afterwards."""
    prefix = f"pitest{uuid.uuid4().hex[:8]}"
    sink = OpenSearchSink(url, prefix)
    yield sink
    sink.client.indices.delete(index=f"{prefix}-*")
    sink.close()


class TestRealClusterContract(SinkContract):
    """The whole contract, kNN included, on a real cluster (only when PI_TEST_OPENSEARCH_KNN_URL is set)."""

    @pytest.fixture
    def sink(self, knn_url) -> Iterator[OpenSearchSink]:
        yield from unique_sink(knn_url)


@pytest.fixture
def knn_sink(knn_url) -> Iterator[OpenSearchSink]:
    for sink in unique_sink(knn_url):
        sink.ensure_ready(DIM)
        yield sink


def test_knn_on_a_real_cluster_returns_nearest_filtered_neighbours(knn_sink):
    knn_sink.write(
        [
            make_chunk("near", vector=[1.0, 0.1, 0.0, 0.0]),
            make_chunk("far", vector=[0.0, 0.0, 1.0, 0.0]),
            make_chunk("middle", vector=[1.0, 1.0, 0.0, 0.0]),
            make_chunk("other-ws", workspace="w2", vector=[1.0, 0.0, 0.0, 0.0]),
            make_chunk("private", owner_id="u2", vector=[1.0, 0.0, 0.0, 0.0]),
            make_chunk("doc", kind="docs", workspace=None, vector=[0.0, 1.0, 0.0, 0.0]),
        ]
    )

    hits = knn_sink.search_vector(SearchQuery(workspace_id="w1", vector=[1.0, 0.0, 0.0, 0.0], user_id="u1", limit=10))

    assert ids(hits)[:2] == ["issues:near#0", "issues:middle#0"]
    assert set(ids(hits)) == {"issues:near#0", "issues:middle#0", "issues:far#0", "docs:doc#0"}
    docs_only = knn_sink.search_vector(SearchQuery(workspace_id="w1", vector=[1.0, 0.0, 0.0, 0.0], kinds=["docs"]))
    assert ids(docs_only) == ["docs:doc#0"]
