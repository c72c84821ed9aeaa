"""Additive schema upgrade: string columns a newer model declares longer are widened (PostgreSQL), a no-op on SQLite."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from pi_framework.db import upgrade_schema, with_driver

#: the ledger as the first version created it: workspace ids of at most 64 characters
OLD_LEDGER = (
    "CREATE TABLE indexed_documents (document_id VARCHAR(512) PRIMARY KEY, source VARCHAR(64) NOT NULL, "
    "kind VARCHAR(64) NOT NULL, workspace_id VARCHAR(64), source_updated_at TIMESTAMP WITH TIME ZONE, "
    "chunk_count INTEGER NOT NULL, indexed_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now())",
    "CREATE TABLE indexed_chunks (chunk_id VARCHAR(600) PRIMARY KEY, document_id VARCHAR(512) NOT NULL, "
    "content_hash VARCHAR(64) NOT NULL, workspace_id VARCHAR(64), indexed_at TIMESTAMP WITH TIME ZONE NOT NULL)",
)


def _lengths(engine, table: str) -> dict[str, int | None]:
    return {column["name"]: getattr(column["type"], "length", None) for column in inspect(engine).get_columns(table)}


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_old_ledger_columns_are_widened_and_take_long_workspace_ids(backend, request, tmp_path):
    if backend == "postgresql":
        url = with_driver(request.getfixturevalue("postgres_url"))
    else:
        url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            for statement in OLD_LEDGER:
                connection.execute(text(statement.replace("now()", "CURRENT_TIMESTAMP")))
            connection.execute(
                text(
                    "INSERT INTO indexed_documents (document_id, source, kind, workspace_id, chunk_count) VALUES ('d', 's', 'k', 'w', 0)"
                )
            )
        upgrade_schema(engine)
        upgrade_schema(engine)  # idempotent: nothing left to widen
        if backend == "postgresql":
            assert _lengths(engine, "indexed_documents")["workspace_id"] == 255
            assert _lengths(engine, "indexed_chunks")["workspace_id"] == 255
            assert _lengths(engine, "indexed_documents")["document_id"] == 512, "never narrowed, never touched when equal"
        workspace = "w" * 200
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO indexed_chunks (chunk_id, document_id, content_hash, workspace_id, indexed_at) "
                    "VALUES ('d#0', 'd', 'h', :w, CURRENT_TIMESTAMP)"
                ),
                {"w": workspace},
            )
            connection.execute(text("UPDATE indexed_documents SET workspace_id = :w"), {"w": workspace})
            assert connection.execute(text("SELECT workspace_id FROM indexed_documents")).scalar() == workspace
    finally:
        engine.dispose()
