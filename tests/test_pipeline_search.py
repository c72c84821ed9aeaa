"""End to end with the real model: documents indexed through the default runtime (fastembed + embedded sink),
then found by ``search`` and ``pi search``; never across workspaces."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from loguru import logger

from pi_framework import runtime
from pi_framework.contract.documents import Document
from pi_framework.contract.sinks import Hit, SearchQuery, SinkError
from pi_framework.pipeline.indexer import Indexer
from pi_framework.search import convex_fusion, reciprocal_rank_fusion, search
from pi_framework.sinks.embedded import EmbeddedSink

WS_A = "aaaaaaaa-0000-4000-8000-000000000001"
WS_B = "bbbbbbbb-0000-4000-8000-000000000002"

ISSUES = {
    "password": ("Account recovery flow", "<p>Users who forgot their credentials can request a new login secret by email.</p>"),
    "invoice": ("Invoices show wrong VAT", "<p>The tax amount on PDF invoices is computed with last year's rate.</p>"),
    "dark": ("Dark mode for the editor", "<p>Add a night theme with low-contrast colours to the rich text editor.</p>"),
    "upload": ("Large attachments time out", "<p>Uploading files bigger than 50 MB fails after thirty seconds.</p>"),
    "calendar": ("Sync cycles with Google Calendar", "<p>Cycle start and end dates should appear in people's calendars.</p>"),
}


def issue(name: str, workspace_id: str = WS_A, **fields) -> Document:
    title, body = ISSUES[name]
    return Document(
        id=f"issues:{workspace_id[:4]}-{name}",
        source="issues",
        kind="issues",
        workspace_id=workspace_id,
        title=title,
        body=body,
        body_format="html",
        key=f"ENG-{len(name)}",
        **fields,
    )


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """Index once for the module through the default runtime (real fastembed model, embedded sink)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PI_DATA_DIR", str(tmp_path_factory.mktemp("pi-data")))
        patch.setenv("HF_HUB_OFFLINE", "1")
        for name in ("PI_DATABASE_URL", "OPENSEARCH_URL", "PI_SINKS", "PI_EMBEDDER", "PI_EMBEDDING_MODEL"):
            patch.delenv(name, raising=False)
        runtime.reset()
        documents = [issue(name) for name in ISSUES]
        documents += [
            Document(
                id="issues:b-secret",
                source="issues",
                kind="issues",
                workspace_id=WS_B,
                key="SEC-1",
                title="Forgot password emails are not sent",
                body="Password reset emails bounce for workspace B.",
            ),
            Document(
                id="docs:plane/docs:reset.md",
                source="docs",
                kind="docs",
                workspace_id=None,
                title="Resetting your password",
                body="# Reset\n\nClick *Forgot password* on the sign-in page.",
                body_format="markdown",
            ),
            Document(
                id="chats:c1",
                source="chats",
                kind="chats",
                workspace_id=WS_A,
                owner_id="user-1",
                title="Chat",
                body="How do I change my password?",
            ),
        ]
        stats = Indexer().index(documents)
        assert stats.failed == {} and stats.documents_indexed == len(documents)
        yield stats
        runtime.reset()


def titles(hits: list[Hit]) -> list[str]:
    return [hit.title for hit in hits]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("I can't remember my password", "Account recovery flow"),
        ("billing amounts are incorrect", "Invoices show wrong VAT"),
        ("theme for working at night", "Dark mode for the editor"),
        ("big file uploads break", "Large attachments time out"),
    ],
)
def test_vector_search_finds_the_meaning(indexed, query: str, expected: str) -> None:
    assert titles(search(query, WS_A, kinds=["issues"], mode="vector", limit=3))[0] == expected


def test_hybrid_search_finds_the_meaning_and_the_words(indexed) -> None:
    hits = search("calendar integration for cycles", WS_A, kinds=["issues"], limit=3)
    assert hits[0].title == "Sync cycles with Google Calendar" and hits[0].key == "ENG-8"
    assert titles(search("VAT", WS_A, mode="text")) == ["Invoices show wrong VAT"]


def test_hybrid_search_with_convex_fusion(indexed, monkeypatch) -> None:
    from pi_framework.settings import get_settings

    monkeypatch.setenv("PI_SEARCH_FUSION", "convex")
    get_settings.cache_clear()
    try:
        hits = search("calendar integration for cycles", WS_A, kinds=["issues"], limit=3)
        assert hits[0].title == "Sync cycles with Google Calendar"
        assert 0.0 < hits[-1].score <= hits[0].score <= 1.0  # means of min-max normalised scores
        assert titles(search("VAT", WS_A, mode="text")) == ["Invoices show wrong VAT"]
    finally:
        monkeypatch.delenv("PI_SEARCH_FUSION")
        get_settings.cache_clear()


def test_one_hit_per_document_best_first(indexed) -> None:
    hits = search("password", WS_A, limit=10)
    assert len({hit.document_id for hit in hits}) == len(hits)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


@pytest.mark.parametrize("mode", ["hybrid", "text", "vector"])
@pytest.mark.parametrize("query", ["Password reset emails bounce for workspace B", "SEC-1", WS_B, f"workspace_id:{WS_B}"])
def test_never_returns_another_workspace(indexed, mode: str, query: str) -> None:
    hits = search(query, WS_A, limit=50, mode=mode)
    assert all(hit.workspace_id in (WS_A, None) for hit in hits)
    assert "issues:b-secret" not in {hit.document_id for hit in hits}


def test_workspace_b_sees_its_own_and_global_content_only(indexed) -> None:
    hits = search("forgot password", WS_B, limit=50)
    assert {hit.document_id for hit in hits} == {"issues:b-secret", "docs:plane/docs:reset.md"}


def test_global_docs_and_private_chats(indexed) -> None:
    assert titles(search("reset password", WS_A, kinds=["docs"])) == ["Resetting your password"]
    assert search("change my password", WS_A, kinds=["chats"]) == []
    assert search("change my password", WS_A, kinds=["chats"], user_id="user-2") == []
    assert titles(search("change my password", WS_A, kinds=["chats"], user_id="user-1")) == ["Chat"]


def test_bad_arguments(indexed) -> None:
    assert search("   ", WS_A) == []
    with pytest.raises(ValueError, match="workspace"):
        search("password", "")
    with pytest.raises(ValueError, match="mode"):
        search("password", WS_A, mode="fuzzy")


class NoKnnSink(EmbeddedSink):
    """Stands for an OpenSearch without the k-NN plugin: vector queries answer HTTP 400."""

    def search_vector(self, query: SearchQuery) -> list[Hit]:
        raise SinkError("HTTP 400: unknown query [knn]")


def test_a_sink_without_knn_degrades_to_text(indexed) -> None:
    sink = NoKnnSink(runtime.get_sinks()[0].path)
    warnings: list[str] = []
    handler = logger.add(warnings.append, level="WARNING", format="{message}")
    try:
        hits = search("VAT invoices", WS_A, sinks=[sink])
    finally:
        logger.remove(handler)
        sink.close()
    assert titles(hits)[0] == "Invoices show wrong VAT"
    assert any("rejected the vector query" in warning for warning in warnings)


def test_pi_search_command(indexed) -> None:
    from pi_framework.cli import build_cli

    result = CliRunner().invoke(build_cli(), ["search", "night theme", "--workspace", WS_A, "--kind", "issues", "--limit", "2"])
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert "[issues]" in first and "ENG-4 · Dark mode for the editor" in first and "score" in first
    assert "night theme with low-contrast colours" in result.output
    empty = CliRunner().invoke(build_cli(), ["search", "night theme", "--workspace", WS_A, "--kind", "nothing"])
    assert empty.exit_code == 0 and "no results" in empty.output


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    def hit(name: str) -> Hit:
        return Hit(chunk_id=f"{name}#0", document_id=name, kind="issues", score=0.0)

    fused = reciprocal_rank_fusion([[hit("a"), hit("b"), hit("c")], [hit("b"), hit("d"), hit("a")]])
    assert [h.document_id for h in fused] == ["b", "a", "d", "c"]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)


def test_convex_fusion_averages_min_max_normalised_scores() -> None:
    def hit(name: str, score: float) -> Hit:
        return Hit(chunk_id=f"{name}#0", document_id=name, kind="issues", score=score)

    bm25 = [hit("a", 12.0), hit("b", 7.0), hit("c", 2.0)]  # normalised 1, 0.5, 0
    cosine = [hit("b", 0.61), hit("d", 0.60), hit("a", 0.21)]  # 1, 0.975, 0
    fused = convex_fusion([bm25, cosine])
    assert [h.document_id for h in fused] == ["b", "a", "d", "c"]
    assert [h.score for h in fused] == pytest.approx([0.75, 0.5, 0.4875, 0.0])
    # one list (text or vector mode, or a failed vector query): its own order; a list of equal scores: all 1
    assert [h.document_id for h in convex_fusion([bm25, []])] == ["a", "b", "c"]
    assert [h.score for h in convex_fusion([[hit("x", 3.0), hit("y", 3.0)]])] == [1.0, 1.0]
    assert convex_fusion([]) == []
