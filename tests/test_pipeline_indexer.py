"""The indexer: skip what did not change, no orphans, the ledger only after the sinks confirmed, bad input isolated.

These use the deterministic ``hashing`` embedder (instant); the real model is exercised end to end in
``test_pipeline_search.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest
from loguru import logger
from sqlalchemy import select

from pi_framework.contract.documents import Chunk, Document
from pi_framework.contract.sinks import SearchQuery, SinkError, WriteResult
from pi_framework.db import Database
from pi_framework.db.models import IndexedChunk, IndexedDocument
from pi_framework.embedding import HashingEmbedder
from pi_framework.pipeline.indexer import Indexer, SinkOutage
from pi_framework.pipeline.ledger import PENDING, same_instant
from pi_framework.settings import Settings, load_settings
from pi_framework.sinks.embedded import EmbeddedSink

WS = "ws-1"


def sentences(count: int, topic: str = "topic") -> str:
    return " ".join(f"Sentence {n} is about {topic} {n % 5} and more." for n in range(count))


def doc(number: int, body: str = "A short body.", workspace_id: str | None = WS, **fields) -> Document:
    return Document(
        id=f"issues:{number}",
        source="issues",
        kind="issues",
        workspace_id=workspace_id,
        title=f"Issue {number}",
        body=body,
        key=f"ENG-{number}",
        **fields,
    )


class CountingEmbedder(HashingEmbedder):
    """Counts embedded texts; raises for texts containing ``BOOM`` (a document the model chokes on)."""

    def __init__(self) -> None:
        super().__init__(dimension=32)
        self.embedded = 0

    def embed(self, texts: Sequence[str]):
        if any("BOOM" in text for text in texts):
            raise RuntimeError("model choked")
        self.embedded += len(texts)
        return super().embed(texts)


class FlakySink(EmbeddedSink):
    """An embedded sink that fails on demand: some chunks (partial bulk failure), or whole calls (HTTP 500, timeout)."""

    name = "flaky"

    def __init__(
        self, path, fail_documents: set[str] = frozenset(), raise_calls: int = 0, error: type[Exception] = SinkError
    ) -> None:
        super().__init__(path)
        self.fail_documents = set(fail_documents)
        self.raise_calls = raise_calls
        self.error = error

    def write(self, chunks: Sequence[Chunk], version: int | None = None) -> WriteResult:
        if self.raise_calls:
            self.raise_calls -= 1
            raise self.error("HTTP 500 from the index" if self.error is SinkError else "read timed out")
        failing = [chunk for chunk in chunks if chunk.document_id in self.fail_documents]
        result = super().write([chunk for chunk in chunks if chunk.document_id not in self.fail_documents], version)
        result.failed.update({chunk.id: "mapper_parsing_exception" for chunk in failing})
        return result


@pytest.fixture
def logged() -> list[str]:
    messages: list[str] = []
    handler = logger.add(messages.append, format="{message}", level="WARNING")
    yield messages
    logger.remove(handler)


@pytest.fixture
def settings(pi_env) -> Settings:
    return pi_env(PI_EMBEDDER="hashing", PI_EMBEDDING_BATCH_SIZE=2)  # groups of 8 chunks: several groups per test


@pytest.fixture
def database(settings: Settings) -> Database:
    database = Database(settings)
    yield database
    database.dispose()


@pytest.fixture
def sink(tmp_path) -> EmbeddedSink:
    sink = EmbeddedSink(tmp_path / "index.sqlite")
    yield sink
    sink.close()


@pytest.fixture
def embedder() -> CountingEmbedder:
    return CountingEmbedder()


@pytest.fixture
def indexer(sink, embedder, database, settings) -> Indexer:
    return Indexer(sinks=[sink], embedder=embedder, database=database, settings=settings)


def ledger(database: Database) -> dict[str, list[str]]:
    """document id -> its ledger chunk ids (recorded documents only)."""
    with database.session() as session:
        documents = set(session.scalars(select(IndexedDocument.document_id)))
        chunks = session.execute(select(IndexedChunk.document_id, IndexedChunk.chunk_id)).all()
    return {document: sorted(c for d, c in chunks if d == document) for document in documents}


def assert_ledger_true(database: Database, *sinks: EmbeddedSink) -> None:
    """Nothing is recorded as indexed that is not in every sink (chunks written ahead, hash PENDING, are intentions)."""
    with database.session() as session:
        chunk_ids = list(session.scalars(select(IndexedChunk.chunk_id).where(IndexedChunk.content_hash != PENDING)))
        counts = dict(session.execute(select(IndexedDocument.document_id, IndexedDocument.chunk_count)).all())
    for sink in sinks:
        assert sink.existing(chunk_ids) == set(chunk_ids)
    for document, chunks in ledger(database).items():
        assert counts[document] == len(chunks)


# ---------------------------------------------------------------- skip what has not changed
def test_second_run_embeds_nothing(indexer: Indexer, embedder: CountingEmbedder, database: Database) -> None:
    documents = [doc(n, sentences(20 * n)) for n in range(1, 6)]
    first = indexer.index(documents)
    assert first.documents_indexed == 5 and first.chunks_embedded == embedder.embedded > 5
    second = indexer.index(documents)
    assert (second.documents_unchanged, second.documents_indexed, second.chunks_embedded) == (5, 0, 0)
    assert embedder.embedded == first.chunks_embedded
    assert_ledger_true(database, indexer.sinks[0])


def test_an_edit_embeds_only_the_changed_chunk(indexer: Indexer, embedder: CountingEmbedder, sink: EmbeddedSink) -> None:
    body = sentences(150)
    indexer.index([doc(1, body)])
    chunks = indexer.chunks_of(doc(1, body))
    assert len(chunks) >= 5
    # a sentence only in the middle chunk (outside the overlaps), edited without changing its length in tokens
    target = next(
        f"Sentence {n} is"
        for n in range(150)
        if sum(f"Sentence {n} is" in chunk.text for chunk in chunks) == 1 and f"Sentence {n} is" in chunks[2].text
    )
    before = embedder.embedded
    stats = indexer.index([doc(1, body.replace(target, target.replace(" is", " was")))])
    assert (stats.documents_indexed, stats.chunks_embedded, embedder.embedded - before) == (1, 1, 1)
    assert [hit.chunk_id for hit in sink.search_text(SearchQuery(WS, text="was"))] == ["issues:1#2"]


def test_shrinking_document_leaves_no_orphans(indexer: Indexer, sink: EmbeddedSink, database: Database) -> None:
    indexer.index([doc(1, sentences(150))])
    assert len(ledger(database)["issues:1"]) >= 5
    long_ids = ledger(database)["issues:1"]
    stats = indexer.index([doc(1, sentences(40))])
    assert ledger(database)["issues:1"] == ["issues:1#0", "issues:1#1"]
    assert sink.existing(long_ids) == {"issues:1#0", "issues:1#1"}
    assert stats.chunks_deleted == len(long_ids) - 2
    assert_ledger_true(database, sink)


def test_newer_updated_at_without_text_change_only_moves_the_ledger(indexer: Indexer, database: Database) -> None:
    indexer.index([doc(1, updated_at=datetime(2026, 1, 1, tzinfo=UTC))])
    stats = indexer.index([doc(1, updated_at=datetime(2026, 2, 1, tzinfo=UTC))])
    assert (stats.documents_unchanged, stats.chunks_embedded) == (1, 0)
    with database.session() as session:
        stored = session.scalar(select(IndexedDocument.source_updated_at))
    assert stored.replace(tzinfo=UTC) == datetime(2026, 2, 1, tzinfo=UTC)


def test_same_instant_across_time_zones_and_naive_values() -> None:
    moment = datetime(2026, 2, 1, 12, tzinfo=UTC)
    assert same_instant(moment, moment.replace(tzinfo=None))
    assert same_instant(moment, moment.astimezone(timezone(timedelta(hours=2))))
    assert not same_instant(moment, moment + timedelta(seconds=1)) and not same_instant(moment, None)


def test_privacy_change_rewrites_the_chunks(indexer: Indexer, sink: EmbeddedSink) -> None:
    indexer.index([doc(1, "salary review")])
    stats = indexer.index([doc(1, "salary review", owner_id="user-1")])
    assert stats.chunks_embedded == 1
    assert sink.search_text(SearchQuery(WS, text="salary")) == []


def test_deleted_documents_leave_sink_and_ledger(indexer: Indexer, sink: EmbeddedSink, database: Database) -> None:
    indexer.index([doc(1, sentences(60)), doc(2)])
    stats = indexer.index([doc(1, deleted=True), doc(404, deleted=True)])
    assert stats.documents_deleted == 2 and stats.chunks_deleted >= 2
    assert sink.count(WS) == 1 and list(ledger(database)) == ["issues:2"]


def test_text_only_documents_have_no_vectors(indexer: Indexer, sink: EmbeddedSink, embedder: CountingEmbedder) -> None:
    stats = indexer.index([doc(1, "retro notes", embed=False)])
    assert (stats.documents_indexed, stats.chunks_embedded, embedder.embedded) == (1, 0, 0)
    assert [hit.chunk_id for hit in sink.search_text(SearchQuery(WS, text="retro"))] == ["issues:1#0"]
    assert sink.search_vector(SearchQuery(WS, vector=[1.0] * 32)) == []


def test_same_document_twice_in_one_stream_keeps_the_last(indexer: Indexer, sink: EmbeddedSink) -> None:
    stats = indexer.index([doc(1, "first version"), doc(1, deleted=True), doc(1, "third version")])
    assert stats.documents_indexed == 2 and stats.documents_deleted == 1
    assert [hit.text for hit in sink.search_text(SearchQuery(WS, text="version"))] == ["Issue 1\nthird version"]


# ---------------------------------------------------------------- the ledger follows the sinks
def test_items_a_sink_rejects_are_not_recorded_and_retried(tmp_path, embedder, database, settings) -> None:
    flaky = FlakySink(tmp_path / "flaky.sqlite", fail_documents={"issues:2", "issues:4"})
    indexer = Indexer(sinks=[flaky], embedder=embedder, database=database, settings=settings)
    documents = [doc(n, sentences(10 * n)) for n in range(1, 6)]
    stats = indexer.index(documents)
    assert set(stats.failed) == {"issues:2", "issues:4"}
    assert "mapper_parsing_exception" in stats.failed["issues:2"]
    assert sorted(ledger(database)) == ["issues:1", "issues:3", "issues:5"]
    assert_ledger_true(database, flaky)

    flaky.fail_documents.clear()
    retry = indexer.index(documents)
    assert (retry.documents_indexed, retry.documents_unchanged, retry.failed) == (2, 3, {})
    assert sorted(ledger(database)) == [f"issues:{n}" for n in range(1, 6)]
    assert_ledger_true(database, flaky)


@pytest.mark.parametrize("error", [SinkError, TimeoutError])
def test_a_sink_that_raises_aborts_the_run_and_records_nothing_of_the_group(
    tmp_path, embedder, database, settings, error
) -> None:
    """An outage (HTTP 500 after retries, a timeout) is not bad input: the run stops, the caller retries it whole."""
    flaky = FlakySink(tmp_path / "flaky.sqlite", raise_calls=1, error=error)
    indexer = Indexer(sinks=[flaky], embedder=embedder, database=database, settings=settings)
    documents = [doc(n, sentences(30)) for n in range(1, 7)]  # several groups of 8 chunks
    with pytest.raises(SinkOutage, match=error.__name__):
        indexer.index(documents)
    assert not ledger(database), "the first group failed: nothing is recorded as indexed"
    assert_ledger_true(database, flaky)
    retry = indexer.index(documents)
    assert retry.documents_indexed == 6 and not retry.failed
    assert_ledger_true(database, flaky)


def test_every_sink_must_confirm(tmp_path, embedder, database, settings, sink) -> None:
    flaky = FlakySink(tmp_path / "flaky.sqlite", fail_documents={"issues:2"})
    indexer = Indexer(sinks=[sink, flaky], embedder=embedder, database=database, settings=settings)
    stats = indexer.index([doc(1), doc(2)])
    assert list(stats.failed) == ["issues:2"] and "sink flaky" in stats.failed["issues:2"]
    assert list(ledger(database)) == ["issues:1"]
    # fail closed: what one sink took is withdrawn again, so no sink serves a version the others refused
    assert sink.existing(["issues:2#0"]) == set()
    flaky.fail_documents.clear()
    assert indexer.index([doc(1), doc(2)]).documents_indexed == 1  # retried next run
    assert sink.existing(["issues:2#0"]) == flaky.existing(["issues:2#0"]) == {"issues:2#0"}


def test_dimension_mismatch_is_a_clear_error(sink, embedder, database, settings) -> None:
    sink.ensure_ready(8)
    with pytest.raises(SinkError, match="8-dimensional"):
        Indexer(sinks=[sink], embedder=embedder, database=database, settings=settings).index([doc(1)])


# ---------------------------------------------------------------- bad input
class NotADocument:
    source = kind = "issues"


def test_bad_input_is_isolated_and_logged(indexer: Indexer, sink: EmbeddedSink, database: Database, logged: list[str]) -> None:
    paragraph = "<p>" + "lorem ipsum dolor sit amet " * 20 + "</p>"
    documents = [
        doc(1),
        doc(2, ""),  # empty body: indexed by its title
        Document(id="issues:3", source="issues", kind="issues", workspace_id=WS, title="", body=""),  # nothing at all
        Document(id="issues:4", source="issues", kind="issues", workspace_id=WS, body=" &nbsp;\n\t&nbsp; ", body_format="html"),
        doc(5, paragraph * (10_000_000 // len(paragraph)), body_format="html"),
        doc(6, b"caf\xc3\xa9 \xff\xfe invalid bytes"),
        doc(7, "nul\x00in the\x00middle"),
        doc(8, "<div>" * 20_000 + "deep content" + "</div>" * 20_000, body_format="html"),
        Document(id="", source="issues", kind="issues", workspace_id=WS, body="no id"),
        Document(id=None, source="issues", kind="issues", workspace_id=WS, body="no id either"),  # type: ignore[arg-type]
        NotADocument(),
        doc(9, "the model chokes on BOOM"),
        doc(10, "last one still goes through"),
    ]
    stats = indexer.index(documents)
    assert set(stats.failed) == {"<document #8 without id>", "<document #9 without id>", "<document #10 without id>", "issues:9"}
    assert "embedding failed" in stats.failed["issues:9"]
    assert stats.documents_empty == 2  # issues:3 and issues:4
    recorded = ledger(database)
    assert sorted(recorded) == sorted(f"issues:{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 10))
    assert recorded["issues:3"] == [] and recorded["issues:4"] == []
    assert len(recorded["issues:5"]) == indexer.settings.PI_MAX_CHUNKS_PER_DOCUMENT
    assert "café" in sink.search_text(SearchQuery(WS, text="invalid bytes"))[0].text
    assert sink.search_text(SearchQuery(WS, text="middle"))[0].text == "Issue 7\nnul in the middle"
    assert sink.search_text(SearchQuery(WS, text="deep"))[0].chunk_id == "issues:8#0"
    assert_ledger_true(database, sink)
    logged = "".join(logged)
    assert "issues:9" in logged and "<document #8 without id>" in logged and "issues:5 truncated" in logged


def test_a_document_that_became_empty_loses_its_chunks(indexer: Indexer, sink: EmbeddedSink, database: Database) -> None:
    indexer.index([doc(1, sentences(60))])
    stats = indexer.index([Document(id="issues:1", source="issues", kind="issues", workspace_id=WS)])
    assert stats.documents_empty == 1 and sink.count() == 0 and ledger(database) == {"issues:1": []}


# ---------------------------------------------------------------- deleting and listing
def test_delete_documents_and_workspace(indexer: Indexer, sink: EmbeddedSink, database: Database) -> None:
    indexer.index([doc(1), doc(2), doc(3, workspace_id="ws-2"), doc(4, workspace_id=None)])
    assert sorted(indexer.indexed_ids(WS, "issues")) == ["issues:1", "issues:2"]
    assert list(indexer.indexed_ids(None, "issues")) == ["issues:4"]
    assert list(indexer.indexed_ids(WS, "pages")) == []
    assert indexer.delete_documents(["issues:1", "issues:404"]) == 1
    assert indexer.delete_workspace(WS) == 1
    assert sink.count(WS) == 0 and sink.count("ws-2") == 1 and sink.count() == 2
    assert sorted(ledger(database)) == ["issues:3", "issues:4"]
    with pytest.raises(ValueError):
        indexer.delete_workspace("")


def test_indexed_ids_streams_past_a_page(indexer: Indexer) -> None:
    indexer.index(
        Document(id=f"issues:{n:05d}", source="issues", kind="issues", workspace_id=WS, title=f"t{n}", embed=False)
        for n in range(2100)
    )
    assert len(set(indexer.indexed_ids(WS, "issues"))) == 2100


def test_ledger_on_postgresql(postgres_url: str, sink: EmbeddedSink, embedder: CountingEmbedder, tmp_path) -> None:
    settings = load_settings(PI_DATA_DIR=tmp_path, PI_DATABASE_URL=postgres_url, PI_EMBEDDING_BATCH_SIZE=2)
    database = Database(settings)
    try:
        indexer = Indexer(sinks=[sink], embedder=embedder, database=database, settings=settings)
        documents = [doc(n, sentences(30), updated_at=datetime(2026, 1, n, tzinfo=UTC)) for n in range(1, 4)]
        assert indexer.index(documents).documents_indexed == 3
        again = indexer.index(documents[:2] + [doc(3, sentences(5))])
        assert (again.documents_unchanged, again.documents_indexed, again.chunks_embedded) == (2, 1, 1)
        later = datetime(2026, 3, 1, tzinfo=UTC)
        assert indexer.index([doc(1, sentences(30), updated_at=later)]).documents_unchanged == 1
        with database.session() as session:
            stored = session.get(IndexedDocument, "issues:1").source_updated_at
        assert same_instant(stored, later)
        assert_ledger_true(database, sink)
    finally:
        database.dispose()
