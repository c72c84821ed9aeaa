"""The embedded sink: the shared sink contract, plus what only a SQLite file must guarantee."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pi_framework.contract.sinks import Filters, SearchQuery
from pi_framework.sinks.embedded import EmbeddedSink, fts_query, query_terms
from pi_framework.testing.sink_contract import WS_A, WS_B, SinkContract


class TestEmbeddedSinkContract(SinkContract):
    @pytest.fixture
    def sink(self, tmp_path: Path):
        sink = EmbeddedSink(tmp_path / "index.sqlite")
        yield sink
        sink.close()


#: the contract's chunk and vector builders, for the tests beyond the contract below
helpers = SinkContract()


@pytest.fixture
def sink(tmp_path: Path):
    sink = EmbeddedSink(tmp_path / "index.sqlite")
    sink.ensure_ready(helpers.dimension)
    yield sink
    sink.close()


def test_survives_a_restart(sink: EmbeddedSink) -> None:
    helpers.write_all(sink, [helpers.chunk("issues:1#0", text="persistent words")])
    sink.close()
    reopened = EmbeddedSink(sink.path)
    assert reopened.count() == 1
    assert [hit.chunk_id for hit in reopened.search_text(SearchQuery(WS_A, text="persistent"))] == ["issues:1#0"]
    assert [hit.chunk_id for hit in reopened.search_vector(SearchQuery(WS_A, vector=helpers.vector(0)))] == ["issues:1#0"]


def test_bad_vectors_fail_alone(sink: EmbeddedSink) -> None:
    good = helpers.chunk("issues:1#0")
    short = helpers.chunk("issues:2#0", vector=[1.0, 2.0])
    nan = helpers.chunk("issues:3#0", vector=[float("nan")] * helpers.dimension)
    result = sink.write([good, short, nan])
    assert result.written == ["issues:1#0"]
    assert set(result.failed) == {"issues:2#0", "issues:3#0"}
    assert "shape" in result.failed["issues:2#0"] and "NaN" in result.failed["issues:3#0"]
    assert sink.existing(["issues:1#0", "issues:2#0", "issues:3#0"]) == {"issues:1#0"}


def test_delete_documents_removes_every_chunk_of_them(sink: EmbeddedSink) -> None:
    helpers.write_all(sink, [helpers.chunk(f"issues:1#{n}") for n in range(3)] + [helpers.chunk("issues:2#0")])
    assert sink.delete_documents(["issues:1", "issues:404"]) == 3
    assert sink.existing([f"issues:1#{n}" for n in range(3)] + ["issues:2#0"]) == {"issues:2#0"}


def test_vector_cache_follows_writes_of_other_connections(sink: EmbeddedSink) -> None:
    helpers.write_all(sink, [helpers.chunk("issues:1#0", vector=helpers.vector(2))])
    assert [hit.chunk_id for hit in sink.search_vector(SearchQuery(WS_A, vector=helpers.vector(0)))] == ["issues:1#0"]
    other = EmbeddedSink(sink.path)  # stands for another worker process
    helpers.write_all(other, [helpers.chunk("issues:2#0", vector=helpers.vector(0))])
    hits = sink.search_vector(SearchQuery(WS_A, vector=helpers.vector(0), limit=1))
    assert [hit.chunk_id for hit in hits] == ["issues:2#0"]
    other.delete_workspace(WS_A)
    assert sink.search_vector(SearchQuery(WS_A, vector=helpers.vector(0))) == []


def test_or_query_leaves_out_terms_in_half_the_chunks(sink: EmbeddedSink, monkeypatch) -> None:
    """A term in half the chunks or more has no BM25 weight in FTS5: in a large index the OR query ranks by the others
    (same order), chunks matching only the common term are no longer candidates; common terms alone still find them."""
    from pi_framework.sinks import embedded

    monkeypatch.setattr(embedded, "COMMON_TERMS_FROM", 11)  # these 11 chunks stand for a large index
    texts = {
        "issues:1#0": "plane webhook secret signature",
        "issues:2#0": "plane webhook retries",
        "issues:3#0": "plane secret rotation webhook webhook",
        **{f"issues:{n}#0": f"plane cycle number {n}" for n in range(4, 12)},
    }
    helpers.write_all(sink, [helpers.chunk(chunk_id, text=text) for chunk_id, text in texts.items()])

    def ranked(text: str) -> list[str]:
        return [hit.chunk_id for hit in sink.search_text(SearchQuery(WS_A, text=text, limit=40))]

    assert sink._scoring_terms(["plane", "webhook", "rotation"]) == ["webhook", "rotation"]  # noqa: SLF001
    found = ranked("plane webhook rotation")
    assert found[0] == "issues:3#0"  # matches every term (the AND pass)
    assert found == ["issues:3#0", *[c for c in ranked("webhook rotation") if c != "issues:3#0"]]
    assert set(found) == {"issues:1#0", "issues:2#0", "issues:3#0"}
    common = ranked("plane cycle")  # every term common: all of them kept
    assert len(common) == 11 and set(common[:8]) == {f"issues:{n}#0" for n in range(4, 12)}
    monkeypatch.setattr(embedded, "COMMON_TERMS_FROM", 12)  # a small index: every term, as before
    assert set(ranked("plane webhook rotation")) == set(texts)


def test_text_queries_are_never_fts_syntax() -> None:
    terms = query_terms('Login "crash" OR NEAR(a b) -x workspace_id:1')
    assert terms == ["login", "crash", "near", "b", "x", "workspace_id", "1"]
    assert fts_query(terms[:2], "AND") == '"login" AND "crash"'
    assert query_terms("  ** ") == []
    assert query_terms("the what") == ["the", "what"]  # only stop words: kept


def test_all_terms_rank_before_some_terms(sink: EmbeddedSink) -> None:
    helpers.write_all(
        sink,
        [
            helpers.chunk("issues:1#0", text="login login login login page"),
            helpers.chunk("issues:2#0", text="login crash on the settings page"),
            helpers.chunk("issues:3#0", text="unrelated"),
        ],
    )
    hits = sink.search_text(SearchQuery(WS_A, text="the login crash"))
    assert [hit.chunk_id for hit in hits] == ["issues:2#0", "issues:1#0"]


#: a writer process: imports only installed packages, so it runs however pytest imported this module
_WRITER = """
import sys
from pathlib import Path
from pi_framework.sinks.embedded import EmbeddedSink
from pi_framework.testing.sink_contract import WS_A, WS_B, SinkContract

path, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
helpers, sink = SinkContract(), EmbeddedSink(Path(path))
for start in range(0, count, 10):
    chunks = [helpers.chunk(f"issues:{worker}-{n}#0", WS_B if worker % 2 else WS_A) for n in range(start, start + 10)]
    assert not sink.write(chunks).failed
sink.close()
"""


@pytest.mark.slow
def test_several_processes_write_at_once(sink: EmbeddedSink) -> None:
    processes = [subprocess.Popen([sys.executable, "-c", _WRITER, str(sink.path), str(worker), "100"]) for worker in range(3)]
    assert [process.wait(120) for process in processes] == [0, 0, 0]
    assert sink.count() == 300
    assert sink.count(WS_A) == 200 and sink.count(WS_B) == 100


def test_text_search_digs_past_other_workspaces_better_matches(sink: EmbeddedSink) -> None:
    crowd = [helpers.chunk(f"issues:b{n}#0", WS_B, text="kubernetes kubernetes kubernetes") for n in range(300)]
    mine = helpers.chunk("issues:a#0", WS_A, text="one mention of kubernetes among many other words in a long text")
    helpers.write_all(sink, [*crowd, mine])
    assert [hit.chunk_id for hit in sink.search_text(SearchQuery(WS_A, text="kubernetes"))] == ["issues:a#0"]
    assert len(sink.search_text(SearchQuery(WS_B, text="kubernetes", limit=50))) == 50


def test_vector_cache_is_bounded_and_stays_correct(sink: EmbeddedSink) -> None:
    workspaces = [f"ws-{n}" for n in range(12)]
    helpers.write_all(sink, [helpers.chunk(f"issues:{w}#0", w, vector=helpers.vector(n)) for n, w in enumerate(workspaces)])
    for _ in range(2):
        for n, workspace in enumerate(workspaces):
            hits = sink.search_vector(SearchQuery(workspace, vector=helpers.vector(n)))
            assert [hit.chunk_id for hit in hits] == [f"issues:{workspace}#0"]
    assert len(sink._vectors) <= 8  # noqa: SLF001 - the memory bound is the behaviour under test


def test_filtered_vector_search_follows_metadata_updates_of_other_connections(sink: EmbeddedSink) -> None:
    """The filter values are loaded into the vector cache on the first search filtering on them, at the cache's
    generation: a metadata update from another process reloads them, unfiltered searches never load them."""
    helpers.write_all(sink, [helpers.chunk(f"issues:{n}#0", metadata={"state": "Todo", "labels": ["a"]}) for n in range(3)])
    assert len(sink.search_vector(SearchQuery(WS_A, vector=helpers.vector(0)))) == 3
    assert sink._vectors[WS_A].filter_pairs == {}, "no filter asked, none loaded"
    todo = SearchQuery(WS_A, vector=helpers.vector(0), filters=Filters(state=["Todo"]))
    assert len(sink.search_vector(todo)) == 3 and set(sink._vectors[WS_A].filter_pairs) == {"state"}
    other = EmbeddedSink(sink.path)  # another worker process
    assert other.update_metadata([("issues:1#0", {"state": "Done", "labels": ["a", "b"]})]).written == ["issues:1#0"]
    assert {hit.chunk_id for hit in sink.search_vector(todo)} == {"issues:0#0", "issues:2#0"}
    done_b = SearchQuery(WS_A, vector=helpers.vector(0), filters=Filters(state=["Done"], labels=["b"]))
    assert [hit.chunk_id for hit in sink.search_vector(done_b)] == ["issues:1#0"]
    other.close()
