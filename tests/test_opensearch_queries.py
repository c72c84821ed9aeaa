"""Exact request bodies of the OpenSearch sink (pure functions; tests/test_opensearch_sink.py sends them to a real node)."""

from __future__ import annotations

import pytest

from pi_framework.contract.documents import Chunk
from pi_framework.contract.sinks import SearchQuery
from pi_framework.sinks.opensearch import queries

WORKSPACE = {
    "bool": {
        "should": [{"term": {"workspace_id": "w1"}}, {"bool": {"must_not": {"exists": {"field": "workspace_id"}}}}],
        "minimum_should_match": 1,
    }
}
PUBLIC_ONLY = {"bool": {"must_not": {"exists": {"field": "owner_id"}}}}
#: a query without projects (the default) keeps every project-scoped chunk out
NO_PROJECT = {"bool": {"must_not": {"exists": {"field": "project_ids"}}}}


def test_knn_query_body_has_filters_inside_the_knn_clause():
    filters = queries.search_filters(
        SearchQuery(workspace_id="w1", vector=[0.5, 1], kinds=["issues", "pages"], user_id="u7", limit=5)
    )

    body = queries.knn_query_body([0.5, 1], 5, filters)

    assert body == {
        "size": 5,
        "_source": {"excludes": ["vector"]},
        "query": {
            "knn": {
                "vector": {
                    "vector": [0.5, 1.0],
                    "k": 5,
                    "filter": {
                        "bool": {
                            "filter": [
                                WORKSPACE,
                                {
                                    "bool": {
                                        "should": [PUBLIC_ONLY, {"term": {"owner_id": "u7"}}],
                                        "minimum_should_match": 1,
                                    }
                                },
                                NO_PROJECT,
                                {"terms": {"kind": ["issues", "pages"]}},
                            ]
                        }
                    },
                }
            }
        },
    }


def test_anonymous_query_sees_only_public_chunks_and_every_kind():
    assert queries.search_filters(SearchQuery(workspace_id="w1")) == [WORKSPACE, PUBLIC_ONLY, NO_PROJECT]


def test_text_query_body_is_bm25_inside_the_same_filters():
    query = SearchQuery(workspace_id="w1", text="login bug", limit=3)

    assert queries.text_query_body(query) == {
        "size": 3,
        "_source": {"excludes": ["vector"]},
        "query": {
            "bool": {
                "must": {"multi_match": {"query": "login bug", "fields": ["title^2", "text", "key^3"]}},
                "filter": [WORKSPACE, PUBLIC_ONLY, NO_PROJECT],
            }
        },
    }


def test_text_query_leaves_out_stop_words_but_keeps_keys_and_contractions():
    def text_of(text: str) -> str:
        body = queries.text_query_body(SearchQuery(workspace_id="w1", text=text))
        return body["query"]["bool"]["must"]["multi_match"]["query"]

    assert text_of("How do I move a ticket to another project?") == "do move ticket another project?"
    assert text_of("what is PROJ-12") == "PROJ-12"  # the key field (keyword) now matches it exactly
    assert text_of("A-12") == "A-12"
    assert text_of("it's broken again") == "it's broken again"
    assert text_of("what is it") == "what is it"  # nothing but stop words: kept


def test_global_and_public_chunks_are_stored_without_workspace_and_owner_fields():
    chunk = Chunk(
        id="docs:a/b:x.md#0",
        document_id="docs:a/b:x.md",
        index=0,
        text="t",
        content_hash="h",
        source="docs",
        kind="docs",
        workspace_id=None,
    )

    source = queries.chunk_source(chunk)

    assert "workspace_id" not in source and "owner_id" not in source and "vector" not in source
    assert source["chunk_id"] == "docs:a/b:x.md#0"


@pytest.mark.parametrize(
    ("prefix", "name", "own"),
    [
        ("pi", "pi-issues", True),
        ("pi", "pi-staging-issues", False),
        ("pi-staging", "pi-staging-issues", True),
        ("pi", "pi-", False),
        ("pi", "pix-issues", False),
    ],
)
def test_other_prefixes_indices_are_not_ours(prefix, name, own):
    assert queries.is_own_index(prefix, name) is own


def test_kind_names_become_safe_index_names():
    assert queries.index_name("pi", "Work-Items") == "pi-work_items"
    with pytest.raises(ValueError):
        queries.kind_suffix("--")


def test_vector_problems_are_found_before_sending():
    assert queries.vector_problem([1.0, 2.0], 2) is None
    assert "3 dimensions" in queries.vector_problem([1.0, 2.0, 3.0], 2)
    assert "NaN" in queries.vector_problem([float("nan"), 1.0], 2)


def test_mapping_problems_name_the_index_and_the_fix():
    good = queries.index_body(384, "issues")["mappings"]

    assert queries.mapping_problem("pi-issues", good, 384) is None
    assert "holds 384-dimensional vectors but the embedder makes 768" in queries.mapping_problem("pi-issues", good, 768)
    assert "OPENSEARCH_INDEX_PREFIX" in queries.mapping_problem("pi-issues", good, 768)
    assert "no knn_vector field" in queries.mapping_problem("pi-legacy", {"properties": {"vector": {"type": "float"}}}, 384)


def test_index_body_turns_knn_on_with_the_chosen_engine():
    body = queries.index_body(384, "issues")

    assert body["settings"] == {"index": {"knn": True, "gc_deletes": "10m"}}
    assert body["mappings"]["dynamic"] == "strict"
    assert body["mappings"]["properties"]["vector"] == {
        "type": "knn_vector",
        "dimension": 384,
        "method": {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"},
    }
    assert queries.index_body(384, "issues", "faiss")["mappings"]["properties"]["vector"]["method"]["engine"] == "faiss"
    with pytest.raises(ValueError, match="lucene, faiss"):
        queries.index_body(384, "issues", "nmslib")


def test_knn_engine_setting_reaches_the_sink(pi_env):
    from pi_framework.sinks.opensearch import create_sink

    assert pi_env().OPENSEARCH_KNN_ENGINE == "lucene"
    settings = pi_env(OPENSEARCH_URL="http://127.0.0.1:1", OPENSEARCH_KNN_ENGINE="faiss")

    sink = create_sink(settings)

    assert sink.knn_engine == "faiss"
    sink.close()
