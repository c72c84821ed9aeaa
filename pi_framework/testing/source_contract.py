"""Contract tests every workspace source must pass. Subclass :class:`SourceContract` and provide fixtures::

    from pi_framework.testing.source_contract import SourceContract

    class TestTicketsSource(SourceContract):
        @pytest.fixture
        def source(self, ...):
            return TicketsSource(...)

        @pytest.fixture
        def workspaces(self, ...):
            # two workspace ids, each with at least one visible document of this source
            return ws_a, ws_b

        @pytest.fixture
        def hide(self, ...):
            # hide(workspace_id) makes one visible document of the workspace invisible the way your content gets
            # hidden (archived, soft-deleted, moved out of reach) and returns its document id
            def hide(workspace_id):
                ...
            return hide

The contract is what the framework's vectorization and live sync rely on: the source is a complete
:class:`~pi_framework.api.Source` with a name the registry accepts; namespaced, unique ids and ``Document.source ==
Source.name``; documents stay in their workspace; ``visible_ids`` and ``visible_versions`` agree with
``iter_documents``; ``changes(ws, None)`` yields every visible document and a cursor that survives a round trip
through JSON (the PI database stores it as JSON); a scan from that cursor with nothing changed yields nothing — a
source that ignores its cursor fails here (re-reading an overlap window is fine, reporting it again is not: remember
what the window held, as :class:`~pi_framework.plane.watermark.Watermark` does); a hidden document is never yielded
as an upsert, by any method; ``changed_workspaces`` (when it names workspaces at all) names the one that changed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from pi_framework.api import Source
from pi_framework.contract.contributions import source_name_problem


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _round_trip(cursor: dict) -> dict:
    text = json.dumps(cursor)  # no default=: the cursor is JSON as it is
    again = json.loads(text)
    assert again == cursor, "the cursor changes through JSON (tuples, non-string keys?)"
    return again


class SourceContract:
    """The behaviour :mod:`pi_framework.default_plugins.workspace_sync` relies on, for any workspace source."""

    def test_is_a_complete_workspace_source_with_an_accepted_name(self, source: Source) -> None:
        assert isinstance(source, Source), "every method of the protocol is required (BaseSource gives two defaults)"
        assert source.scope == "workspace" and source.name and source.kind
        assert source_name_problem(source) is None, source_name_problem(source)

    def test_documents_are_namespaced_unique_and_stay_in_their_workspace(self, source: Source, workspaces) -> None:
        seen: set[str] = set()
        for workspace_id in workspaces:
            documents = list(source.iter_documents(workspace_id))
            assert documents, f"fixture workspace {workspace_id} has no document"
            for document in documents:
                assert document.id.startswith(f"{source.name}:"), document.id
                assert document.source == source.name and document.kind == source.kind
                assert document.workspace_id == workspace_id, f"{document.id} crossed into {workspace_id}"
                assert not document.deleted, f"iter_documents yielded the deletion of {document.id}"
                assert document.id not in seen, f"duplicate id {document.id}"
                seen.add(document.id)

    def test_visible_ids_and_versions_agree_with_documents(self, source: Source, workspaces) -> None:
        for workspace_id in workspaces:
            documents = {document.id: _utc(document.updated_at) for document in source.iter_documents(workspace_id)}
            assert set(source.visible_ids(workspace_id)) == set(documents)
            versions = {document_id: _utc(version) for document_id, version in source.visible_versions(workspace_id)}
            assert set(versions) == set(documents)
            stale = {doc: (version, documents[doc]) for doc, version in versions.items() if version not in (None, documents[doc])}
            assert not stale, f"visible_versions disagrees with the documents' updated_at (re-indexed forever): {stale}"

    def test_a_full_change_scan_yields_every_visible_document_of_its_workspace_only(self, source: Source, workspaces) -> None:
        for workspace_id in workspaces:
            changes = source.changes(workspace_id, None)
            documents = list(changes.documents)
            upserts = {document.id for document in documents if not document.deleted}
            assert set(source.visible_ids(workspace_id)) <= upserts, "changes(ws, None) must yield every visible document"
            for document in documents:
                assert document.source == source.name and document.kind == source.kind
                assert document.workspace_id == workspace_id, f"{document.id} crossed into {workspace_id}"
            _round_trip(changes.cursor())

    def test_a_scan_from_a_json_round_tripped_cursor_with_nothing_changed_yields_nothing(
        self, source: Source, workspaces
    ) -> None:
        workspace_id = workspaces[0]
        first = source.changes(workspace_id, None)
        list(first.documents)
        cursor = _round_trip(first.cursor())
        again = source.changes(workspace_id, cursor)
        reported = [document.id for document in again.documents]
        assert not reported, f"nothing changed, yet the scan from the cursor reported {reported} (is the cursor ignored?)"
        _round_trip(again.cursor())

    def test_a_hidden_document_is_never_yielded_as_an_upsert(
        self, source: Source, workspaces, hide: Callable[[str], str]
    ) -> None:
        workspace_id = workspaces[0]
        first = source.changes(workspace_id, None)
        list(first.documents)
        cursor = _round_trip(first.cursor())
        _, scan_state = source.changed_workspaces(None)
        hidden = hide(workspace_id)
        named, _ = source.changed_workspaces(_round_trip(scan_state))
        assert named is None or workspace_id in named, "changed_workspaces missed the workspace of the change"
        assert hidden.startswith(f"{source.name}:"), "hide() returns the id of the document it hid"
        assert hidden not in {document.id for document in source.iter_documents(workspace_id)}
        assert hidden not in set(source.visible_ids(workspace_id))
        assert hidden not in {document_id for document_id, _ in source.visible_versions(workspace_id)}
        full = source.changes(workspace_id, None)
        assert hidden not in {document.id for document in full.documents if not document.deleted}
        since = list(source.changes(workspace_id, cursor).documents)
        assert hidden not in {document.id for document in since if not document.deleted}, "a hidden document upserted"
        others = {document.id for document in since if document.id != hidden}
        assert not others, f"only {hidden} changed, yet the scan from the cursor reported {others} (is the cursor ignored?)"
