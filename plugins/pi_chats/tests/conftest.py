"""Fixtures of the pi_chats tests: message payloads, search shortcuts, and OpenSearch on the real test node.

OpenSearch is the node of ``opensearch_url`` (``PI_TEST_OPENSEARCH_URL``, k-NN and delete-by-query included): every
test using ``opensearch_env`` gets an index prefix of its own, deleted afterwards.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pi_chats import ids

from pi_framework.search import search

START = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


class Chats:
    """Search the chats of a workspace the way the assistant would, as one user."""

    def hits(self, query: str, *, user_id: str | None = "alice", workspace_id: str = "ws-a", mode: str = "text") -> list:
        return search(query, workspace_id, kinds=["chats"], user_id=user_id, limit=50, mode=mode)

    def ids(self, query: str, **kwargs: Any) -> set[str]:
        return {hit.document_id for hit in self.hits(query, **kwargs)}

    def titles(self, query: str, **kwargs: Any) -> dict[str, str]:
        """Chat title documents (``chat:<workspace_id>:<chat_id>``) matching *query*: chat id -> title."""
        return {hit.metadata["chat_id"]: hit.title for hit in self.hits(query, **kwargs) if not ids.parse(hit.document_id).is_message}


@pytest.fixture
def found() -> Chats:
    return Chats()


@pytest.fixture
def message():
    """``message(chat_id, text, minute=0, role="user", user_id="alice", workspace_id="ws-a", **extra)``: a valid payload."""
    ids = itertools.count(1)

    def make(
        chat_id: str,
        text: str,
        *,
        minute: int = 0,
        role: str = "user",
        user_id: str = "alice",
        workspace_id: str = "ws-a",
        **extra: Any,
    ) -> dict[str, Any]:
        return {
            "workspace_id": workspace_id,
            "chat_id": chat_id,
            "message_id": f"m{next(ids)}",
            "user_id": user_id,
            "role": role,
            "text": text,
            "created_at": (START + timedelta(minutes=minute)).isoformat(),
            **extra,
        }

    return make


class OpenSearchEnv(dict):
    """Settings of the opensearch sink under a private prefix: ``pi_env(**env)``; ``env.refresh()`` makes what another
    process (or another sink object) wrote searchable now rather than after the node's 1 s refresh."""

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__(PI_SINKS="opensearch", OPENSEARCH_URL=url, OPENSEARCH_INDEX_PREFIX=prefix)
        self.url = url
        self.prefix = prefix

    def _client(self):
        from opensearchpy import OpenSearch

        return OpenSearch(hosts=[self.url])

    def refresh(self) -> None:
        client = self._client()
        try:
            client.indices.refresh(index=f"{self.prefix}-*", ignore_unavailable=True)
        finally:
            client.close()

    def delete(self) -> None:
        client = self._client()
        try:
            client.indices.delete(index=f"{self.prefix}-*", ignore_unavailable=True)
        finally:
            client.close()


@pytest.fixture
def opensearch_env(opensearch_url) -> Iterator[OpenSearchEnv]:
    env = OpenSearchEnv(opensearch_url, f"pichats{uuid.uuid4().hex[:8]}")
    yield env
    env.delete()

