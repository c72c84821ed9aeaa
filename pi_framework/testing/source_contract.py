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

The contract is what the framework's vectorization and live sync rely on: namespaced, unique ids;
documents stay in their workspace; ``visible_ids`` agrees with ``iter_documents``; a full change scan
yields every visible document and a JSON cursor; a second scan with nothing changed yields nothing new.
"""

from __future__ import annotations

import json

from pi_framework.contributions import Source


class SourceContract:
    """The behaviour :mod:`pi_framework.default_plugins.workspace_sync` relies on, for any workspace source."""

    def test_is_a_workspace_source(self, source: Source) -> None:
        assert isinstance(source, Source)
        assert source.scope == "workspace" and source.name and source.kind

    def test_documents_are_namespaced_unique_and_stay_in_their_workspace(self, source: Source, workspaces) -> None:
        seen: set[str] = set()
        for workspace_id in workspaces:
            documents = list(source.iter_documents(workspace_id))
            assert documents, f"fixture workspace {workspace_id} has no document"
            for document in documents:
                assert document.id.startswith(f"{source.name}:"), document.id
                assert document.source == source.name and document.kind == source.kind
                assert document.workspace_id == workspace_id, f"{document.id} crossed into {workspace_id}"
                assert document.id not in seen, f"duplicate id {document.id}"
                seen.add(document.id)

    def test_visible_ids_agree_with_documents(self, source: Source, workspaces) -> None:
        for workspace_id in workspaces:
            visible = {document.id for document in source.iter_documents(workspace_id) if not document.deleted}
            assert set(source.visible_ids(workspace_id)) == visible

    def test_full_change_scan_yields_every_visible_document_and_a_json_cursor(self, source: Source, workspaces) -> None:
        workspace_id = workspaces[0]
        changes = source.changes(workspace_id, None)
        changed = {document.id for document in changes.documents if not document.deleted}
        assert set(source.visible_ids(workspace_id)) <= changed
        cursor = changes.cursor()
        assert json.loads(json.dumps(cursor)) == cursor, "the cursor is stored as JSON"

    def test_scan_with_nothing_changed_yields_nothing_new(self, source: Source, workspaces) -> None:
        workspace_id = workspaces[0]
        first = source.changes(workspace_id, None)
        versions = {document.id: document.updated_at for document in first.documents}
        again = source.changes(workspace_id, first.cursor())
        for document in again.documents:  # re-reads inside an overlap window are allowed, new versions are not
            assert versions.get(document.id) == document.updated_at, f"{document.id} reported changed but was not"
