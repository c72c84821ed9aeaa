"""Retrieval quality changes (issue 22, item 1): the heading-path context line of chunks, the BM25 title weight in both
sinks, and the optional cross-encoder re-ranker with its fall-back to fusion alone. The figures are in
``bench/retrieval.py``; these tests pin the behaviour."""

from __future__ import annotations

import pytest
from loguru import logger

from pi_framework import rerank
from pi_framework.contract.documents import Chunk, Document
from pi_framework.contract.sinks import SearchQuery
from pi_framework.embedding import HashingEmbedder
from pi_framework.pipeline import chunking
from pi_framework.pipeline.chunking import ChunkingParams, _headings, heading_parents, heading_path, split
from pi_framework.pipeline.hashing import PIPELINE_VERSION
from pi_framework.pipeline.indexer import Indexer
from pi_framework.search import search
from pi_framework.sinks import embedded
from pi_framework.sinks.embedded import EmbeddedSink
from pi_framework.sinks.opensearch import queries

WS = "ws-retrieval"


def _path(body: str, before: int, title: str = "", closed_by: int | None = None) -> list[str]:
    headings = _headings(body)
    return heading_path(headings, heading_parents(headings), before, title, closed_by)


# ------------------------------------------------------------------ heading paths
def test_heading_path_follows_nesting_and_leaves_out_an_h1_that_repeats_the_title() -> None:
    body = "# Cycles\nintro\n## Create\na\n### Dates\nb\n## Transfer\nc\n#### Deep\nd\n# Other part\ne\n"
    assert [level for _, level, _ in _headings(body)] == [1, 2, 3, 2, 4, 1]
    assert _path(body, 0, "Cycles") == []
    assert _path(body, 1, "Cycles") == []  # only the H1, which is the title
    assert _path(body, 1, "Something else") == ["Cycles"]
    assert _path(body, 3, "Cycles") == ["Create", "Dates"]
    assert _path(body, 4, "Cycles") == ["Transfer"]  # an H2 closes the H2 and H3 before it
    assert _path(body, 5, "Cycles") == ["Transfer", "Deep"]
    assert _path(body, 6, "Cycles") == ["Other part"]
    # text right at a heading of level 2: what encloses that heading, not the previous section
    assert _path(body, 3, "Cycles", closed_by=2) == []
    assert _path(body, 3, "Cycles", closed_by=3) == ["Create"]


def test_heading_parents_is_linear_and_bounded_by_depth() -> None:
    body = "".join(f"{'#' * (1 + n % 6)} h{n}\ntext\n" for n in range(600))
    headings = _headings(body)
    parents = heading_parents(headings)
    assert len(parents) == 600 and parents[0] == -1 and parents[1] == 0
    assert _path(body, 600) == [f"h{n}" for n in range(594, 600)]


def _long_guide() -> str:
    sentence = "Plane keeps every change of a work item in its activity so people can follow what happened. "
    return (
        "# Guide\n\nIntro paragraph. "
        + sentence * 3
        + "\n\n## Cycles\n\n"
        + sentence * 4
        + "\n\n### Transfer work items\n\n"
        + sentence * 30
        + "\n\n## Modules\n\n"
        + sentence * 30
    )


def test_windows_carry_their_heading_path_as_context_line() -> None:
    windows, truncated = split("Guide", _long_guide(), HashingEmbedder(), ChunkingParams(tokens=120, overlap=10, max_chunks=50))
    assert not truncated and len(windows) > 4
    first_lines = [window.text.split("\n", 1)[0] for window in windows]
    assert first_lines[0] == "Guide"
    assert "Guide: Cycles > Transfer work items" in first_lines  # mid-subsection: the whole path
    assert "Guide: Modules" in first_lines
    assert not any(line.startswith("Guide: Guide") for line in first_lines)  # the H1 is the title already
    for window in windows:  # a window starting on "## Modules" is not labelled with the previous section
        if window.text.split("\n", 1)[1].startswith("## Modules"):
            assert window.text.split("\n", 1)[0] == "Guide"


def test_heading_path_off_gives_the_chunks_of_pipeline_version_1(monkeypatch) -> None:
    params = ChunkingParams(tokens=120, overlap=10, max_chunks=50)
    monkeypatch.setattr(chunking, "HEADING_PATH", False)
    first_lines = [window.text.split("\n", 1)[0] for window in split("Guide", _long_guide(), HashingEmbedder(), params)[0]]
    assert "Guide: Transfer work items" in first_lines  # the nearest heading alone
    assert not any(" > " in line for line in first_lines)


def test_the_context_line_is_embedded_and_in_the_content_hash(pi_env, monkeypatch) -> None:
    """What is embedded changed, so the pipeline version moved: every existing index re-embeds once."""
    pi_env(PI_EMBEDDER="hashing", PI_CHUNK_TOKENS=120, PI_CHUNK_OVERLAP=10)
    assert PIPELINE_VERSION == "2"
    document = Document(
        id="docs:guide", source="docs", kind="docs", workspace_id=None, title="Guide", body=_long_guide(), body_format="markdown"
    )
    indexer = Indexer(sinks=[], embedder=HashingEmbedder())
    with_path = indexer.chunks_of(document)
    monkeypatch.setattr(chunking, "HEADING_PATH", False)
    without = indexer.chunks_of(document)
    changed = [new for new, old in zip(with_path, without, strict=False) if new.text != old.text]
    assert changed, "some chunk's context line differs"
    old_hashes = {chunk.id: chunk.content_hash for chunk in without}
    assert all(chunk.content_hash != old_hashes.get(chunk.id) for chunk in changed)
    assert any("Guide: Cycles > Transfer work items\n" in chunk.text for chunk in with_path)


# ------------------------------------------------------------------ title-aware BM25
def _chunk(number: int, title: str, text: str) -> Chunk:
    return Chunk(
        id=f"docs:{number}#0",
        document_id=f"docs:{number}",
        index=0,
        text=text,
        content_hash="x",
        source="docs",
        kind="docs",
        workspace_id=WS,
        title=title,
    )


def test_embedded_bm25_weighs_title_matches_by_title_weight(tmp_path, monkeypatch) -> None:
    sink = EmbeddedSink(tmp_path / "index.sqlite")
    sink.ensure_ready(4)
    filler = " ".join(f"word{n}" for n in range(40))
    sink.write(
        [
            _chunk(1, "Webhooks", f"Send events to your server. {filler}"),
            _chunk(2, "Integrations overview", f"webhooks webhooks and more webhooks are covered here. {filler}"),
            *[_chunk(n, f"Page {n}", f"unrelated text {n} {filler}") for n in range(3, 12)],
        ]
    )
    query = SearchQuery(workspace_id=WS, text="webhooks", limit=5)
    monkeypatch.setattr(embedded, "TITLE_WEIGHT", 0.0)
    assert sink.search_text(query)[0].document_id == "docs:2"  # text alone: the chunk saying it three times
    monkeypatch.setattr(embedded, "TITLE_WEIGHT", 50.0)
    assert sink.search_text(query)[0].document_id == "docs:1"  # the page titled so wins once the title counts
    sink.close()


def test_opensearch_text_query_boosts_the_title() -> None:
    body = queries.text_query_body(SearchQuery(workspace_id=WS, text="webhooks", limit=5))
    fields = body["query"]["bool"]["must"]["multi_match"]["fields"]
    assert "text" in fields and any(field.startswith("title^") for field in fields)
    assert float(next(f for f in fields if f.startswith("title^")).split("^")[1]) == embedded.TITLE_WEIGHT


# ------------------------------------------------------------------ re-ranker
@pytest.fixture
def small_index(pi_env):
    """Three documents through the real pipeline (hashing embedder, embedded sink) for search()."""
    pi_env(PI_EMBEDDER="hashing")
    from pi_framework import runtime
    from pi_framework.db import get_database
    from pi_framework.settings import get_settings

    runtime.reset()
    rerank.reset()
    get_database().ensure_schema()
    sink = EmbeddedSink(get_settings().data_dir / "small.sqlite")
    documents = [
        Document(id=f"docs:{name}", source="docs", kind="docs", workspace_id=None, title=title, body=body)
        for name, title, body in (
            ("cycles", "Cycles", "Cycles are time boxes; transfer unfinished work items when a cycle ends."),
            ("modules", "Modules", "Modules group work items by feature; a work item may sit in several modules."),
            ("intake", "Intake", "Intake collects requests; accept, decline or snooze each request."),
        )
    ]
    Indexer(sinks=[sink], embedder=HashingEmbedder()).index(documents)
    yield sink
    rerank.reset()
    sink.close()


class _Prefers:
    """A fake cross-encoder scoring the passages that mention *word* highest."""

    name = "fake"

    def __init__(self, word: str) -> None:
        self.word, self.calls = word, 0

    def score(self, query: str, passages):  # noqa: ANN001, ANN201
        self.calls += 1
        import numpy as np

        return np.array([1.0 if self.word in passage.lower() else 0.0 for passage in passages], dtype=np.float32)


class _Broken:
    name = "broken"

    def score(self, query: str, passages):  # noqa: ANN001, ANN201
        raise RuntimeError("onnxruntime exploded")


def _warnings():  # noqa: ANN202
    seen: list[str] = []
    handler = logger.add(lambda message: seen.append(message.record["message"]), level="WARNING")
    return seen, handler


def test_reranker_reorders_hybrid_results_only(small_index) -> None:
    query = "work items of a cycle"
    fused = [hit.document_id for hit in search(query, WS, sinks=[small_index], rerank=False)]
    assert fused[0] == "docs:cycles"
    fake = _Prefers("intake")
    rerank.use(fake)
    reranked = search(query, WS, sinks=[small_index])
    assert [hit.document_id for hit in reranked][0] == "docs:intake"
    assert reranked[0].score == 1.0
    assert sorted(hit.document_id for hit in reranked) == sorted(fused)  # same candidates, new order
    calls = fake.calls
    search(query, WS, sinks=[small_index], mode="text")
    search(query, WS, sinks=[small_index], rerank=False)
    assert fake.calls == calls  # text/vector modes and rerank=False never call it


def test_a_reranker_that_cannot_load_warns_once_and_search_uses_fusion(small_index, pi_env, tmp_path) -> None:
    pi_env(PI_EMBEDDER="hashing", PI_RERANKER_PATH=str(tmp_path / "no-such-model"))
    rerank.reset()
    seen, handler = _warnings()
    try:
        first = search("transfer work items cycle", WS, sinks=[small_index])
        second = search("group by feature", WS, sinks=[small_index])
    finally:
        logger.remove(handler)
    assert first and first[0].document_id == "docs:cycles" and second
    assert expected_once(seen, "cannot be loaded")
    assert [hit.document_id for hit in first] == [
        hit.document_id for hit in search("transfer work items cycle", WS, sinks=[small_index], rerank=False)
    ]


def test_a_reranker_that_fails_while_scoring_warns_once_then_is_dropped(small_index) -> None:
    rerank.use(_Broken())
    seen, handler = _warnings()
    try:
        first = search("transfer work items cycle", WS, sinks=[small_index])
        second = search("transfer work items cycle", WS, sinks=[small_index])
    finally:
        logger.remove(handler)
    fused = [hit.document_id for hit in search("transfer work items cycle", WS, sinks=[small_index], rerank=False)]
    assert [hit.document_id for hit in first] == fused == [hit.document_id for hit in second]
    assert expected_once(seen, "onnxruntime exploded")
    assert rerank.get_reranker() is None


def test_cross_encoder_refuses_a_folder_without_a_model(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no ONNX model"):
        rerank.CrossEncoderReranker(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        rerank.CrossEncoderReranker(tmp_path)


def expected_once(messages: list[str], fragment: str) -> bool:
    return sum(fragment in message for message in messages) == 1 and len(messages) == 1
