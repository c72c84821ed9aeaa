"""``pi chats-backfill FILE.jsonl``: an export indexed in batches; bad lines are reported, the rest goes through."""

from __future__ import annotations

import json
import socket

from click.testing import CliRunner
from pi_chats import ids

from pi_framework.cli import build_cli


def doc_id(chat_id: str, message: dict | None = None, workspace_id: str = "ws-a") -> str:
    """The document id of a chat (its title) or, given its payload, of one of its messages."""
    if message is not None:
        return ids.document_id(message["workspace_id"], chat_id, message["message_id"])
    return ids.document_id(workspace_id, chat_id)


def test_backfill_indexes_an_export_and_summarises(pi_env, tmp_path, message, found):
    pi_env(PI_EMBEDDER="hashing")
    first = message("c1", "Migrate the billing database", minute=0)
    answer = message("c1", "Use logical replication then switch over", role="assistant", minute=1)
    bobs = message("c2", "Replication lag alerts", user_id="bob", minute=0)
    lines = [json.dumps(answer), json.dumps(first), "", json.dumps(answer), "{not json", json.dumps(bobs)]
    lines.append(json.dumps({k: v for k, v in message("c3", "no role").items() if k != "role"}))
    export = tmp_path / "chats.jsonl"
    export.write_text("\n".join(lines) + "\n")

    result = CliRunner().invoke(build_cli(), ["chats-backfill", str(export), "--batch-size", "1"])

    assert result.exit_code == 1, result.output  # some lines were rejected
    assert (
        "7 lines" not in result.output
        and "6 lines" in result.output
        and "4 messages" in result.output
        and "2 rejected" in result.output
        and "0 failed" in result.output
    )
    assert "indexing chats.jsonl" in result.output, "progress bar label"
    assert found.titles("billing") == {"c1": "Migrate the billing database"}, "the earliest user message names the chat"
    [hit] = found.hits("replication")
    assert hit.document_id == doc_id("c1", answer), "the duplicate line gave one message"
    assert hit.title == "Migrate the billing database", "indexed with the final title although its line came first"
    assert found.ids("replication", user_id="bob") == {doc_id("c2"), doc_id("c2", bobs)}

    again = CliRunner().invoke(build_cli(), ["chats-backfill", str(export)])
    assert "0 documents indexed" in again.output, "a second run changes nothing"


def test_backfill_against_an_unreachable_index_says_so_and_that_a_rerun_is_safe(pi_env, tmp_path, message):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        pi_env(PI_EMBEDDER="hashing", PI_SINKS="opensearch", OPENSEARCH_URL=f"http://127.0.0.1:{probe.getsockname()[1]}")
        export = tmp_path / "chats.jsonl"
        export.write_text(json.dumps(message("c1", "hello")) + "\n")
        result = CliRunner().invoke(build_cli(), ["chats-backfill", str(export)])
    assert result.exit_code == 2
    assert "error: OpenSearch" in result.output and "run the command again" in result.output
