"""Chunking with the real model's tokenizer: windows fit the model, overlap, title in every chunk, stable ids."""

from __future__ import annotations

import pytest

from pi_framework.contract.documents import Document
from pi_framework.embedding import FastEmbedder
from pi_framework.pipeline.chunking import ChunkingParams, split
from pi_framework.pipeline.indexer import Indexer
from pi_framework.settings import load_settings

PARAMS = ChunkingParams(tokens=256, overlap=32, max_chunks=200)


@pytest.fixture(scope="module")
def embedder(tmp_path_factory) -> FastEmbedder:
    return FastEmbedder(load_settings(PI_DATA_DIR=tmp_path_factory.mktemp("model")))


def sentences(count: int) -> str:
    return " ".join(f"Sentence number {n} talks about topic {n % 7} in some detail." for n in range(count))


def model_tokens(embedder: FastEmbedder, text: str) -> int:
    return len(embedder.token_spans(text)) + embedder.special_tokens


def test_short_document_is_one_chunk(embedder: FastEmbedder) -> None:
    windows, truncated = split("Login fails", "Clicking submit does nothing.", embedder, PARAMS)
    assert [window.text for window in windows] == ["Login fails\nClicking submit does nothing."]
    assert not truncated


def test_windows_fit_the_model_and_overlap(embedder: FastEmbedder) -> None:
    body = sentences(200)
    windows, truncated = split("A rather long design document", body, embedder, PARAMS)
    assert len(windows) > 5 and not truncated
    for window in windows:
        assert model_tokens(embedder, window.text) <= 256
        assert window.text.startswith("A rather long design document\n")
    bodies = [window.text.split("\n", 1)[1] for window in windows]
    for previous, current in zip(bodies, bodies[1:], strict=False):
        tail = previous.split()[-5:]
        assert " ".join(tail) in current, "consecutive chunks overlap"
    assert all(f"Sentence number {n} " in "".join(bodies) for n in range(200)), "nothing is lost"


def test_windows_prefer_to_end_at_sentences(embedder: FastEmbedder) -> None:
    windows, _ = split("", sentences(200), embedder, PARAMS)
    assert all(window.text.endswith(".") for window in windows)


def test_settings_window_smaller_than_the_model(embedder: FastEmbedder) -> None:
    windows, _ = split("", sentences(50), embedder, ChunkingParams(tokens=64, overlap=8, max_chunks=200))
    assert all(model_tokens(embedder, window.text) <= 64 for window in windows)


def test_long_title_leaves_room_for_the_body(embedder: FastEmbedder) -> None:
    windows, _ = split("title words " * 300, sentences(30), embedder, PARAMS)
    assert all(model_tokens(embedder, window.text) <= 256 for window in windows)
    assert all(len(window.text.split("\n", 1)[1]) > 100 for window in windows[:-1])


def test_huge_document_is_truncated(embedder: FastEmbedder) -> None:
    windows, truncated = split("", sentences(5000), embedder, ChunkingParams(tokens=256, overlap=32, max_chunks=10))
    assert len(windows) == 10 and truncated


def test_chunk_ids_and_hashes_are_deterministic(pi_env, embedder: FastEmbedder) -> None:
    settings = pi_env(PI_EMBEDDER="hashing")
    document = Document(id="pages:p1", source="pages", kind="pages", workspace_id="w", title="T", body=sentences(100))
    first = Indexer(sinks=[], embedder=embedder, settings=settings).chunks_of(document)
    again = Indexer(sinks=[], embedder=embedder, settings=settings).chunks_of(document)
    assert [chunk.id for chunk in first] == [f"pages:p1#{n}" for n in range(len(first))]
    assert [chunk.content_hash for chunk in first] == [chunk.content_hash for chunk in again]
    private = Document(**{**document.__dict__, "owner_id": "u1"})
    assert Indexer(sinks=[], embedder=embedder, settings=settings).chunks_of(private)[0].content_hash != first[0].content_hash
