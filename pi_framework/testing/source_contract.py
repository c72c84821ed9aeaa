"""Contract tests every workspace source must pass. Subclass :class:`SourceContract` and provide four fixtures::

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
        def edit(self, ...):
            # edit(workspace_id) changes the text (title or body) of one visible document of the workspace the way
            # your users do, and returns its document id
            def edit(workspace_id):
                ...
            return edit

        @pytest.fixture
        def hide(self, ...):
            # hide(workspace_id) makes one visible document of the workspace invisible the way your content gets
            # hidden (archived, soft-deleted, moved out of reach) and returns its document id
            def hide(workspace_id):
                ...
            return hide

The fixtures may also live in the module or a ``conftest.py``; a missing one fails its tests with a message saying
what to write. Each test checks rules, and a failure starts with the rule it broke (``rule 'an edit comes back from
the cursor': …``):

* ``'a complete workspace source with an accepted name'``: every method of :class:`~pi_framework.api.Source`, scope
  ``workspace``, a name the registry accepts;
* ``'documents are namespaced, unique and stay in their workspace'``: ids ``<name>:…``, unique across workspaces,
  ``Document.source == Source.name``;
* ``'visible_ids and visible_versions agree with iter_documents'``;
* ``'changes(ws, None) yields every visible document'``, of its workspace only;
* ``'the cursor survives JSON'``: the PI database stores it as JSON;
* ``'nothing changed, nothing yielded'``: a source that ignores its cursor fails here (re-reading an overlap window
  is fine, reporting it again is not: remember what the window held, as :class:`~pi_framework.plane.watermark.Watermark`
  does);
* ``'an edit comes back from the cursor'``: after ``edit``, ``changes(ws, cursor)`` yields the document again, with
  the new text, and ``iter_documents`` shows the new text too;
* ``'an edit comes back with a newer updated_at'``: when the document has an ``updated_at``, the edited one is
  newer, and ``visible_versions`` says so (a re-feed skips a document whose ``updated_at`` the ledger already holds,
  and the live sync does not count it as pending). A source that sets no ``updated_at`` at all is compared by content;
* ``'a hidden document comes back from the cursor as deleted=True'`` (see :attr:`SourceContract.reports_deletions`);
* ``'a hidden document leaves iter_documents, visible_ids and visible_versions'``: what the reconcile relies on;
* ``'a hidden document is never yielded as an upsert'``, by any method;
* ``'a change is reported once'``: the scan from the cursor taken after a change yields nothing;
* ``'changed_workspaces names the workspace of a change'`` (when it names workspaces at all).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from pi_framework import runtime
from pi_framework.api import Document, Source
from pi_framework.contract.contributions import source_name_problem

COMPLETE = "a complete workspace source with an accepted name"
NAMESPACED = "documents are namespaced, unique and stay in their workspace"
AGREE = "visible_ids and visible_versions agree with iter_documents"
FULL_SCAN = "changes(ws, None) yields every visible document"
JSON_CURSOR = "the cursor survives JSON"
NOTHING_CHANGED = "nothing changed, nothing yielded"
EDIT_COMES_BACK = "an edit comes back from the cursor"
EDIT_IS_NEWER = "an edit comes back with a newer updated_at"
DELETION_COMES_BACK = "a hidden document comes back from the cursor as deleted=True"
HIDDEN_LEAVES = "a hidden document leaves iter_documents, visible_ids and visible_versions"
NEVER_UPSERTED = "a hidden document is never yielded as an upsert"
REPORTED_ONCE = "a change is reported once"
CHANGED_WORKSPACES = "changed_workspaces names the workspace of a change"

#: every rule the kit checks, in the order a scan meets them
RULES = (
    COMPLETE,
    NAMESPACED,
    AGREE,
    FULL_SCAN,
    JSON_CURSOR,
    NOTHING_CHANGED,
    EDIT_COMES_BACK,
    EDIT_IS_NEWER,
    DELETION_COMES_BACK,
    HIDDEN_LEAVES,
    NEVER_UPSERTED,
    REPORTED_ONCE,
    CHANGED_WORKSPACES,
)

#: what a subclass writes for each fixture, said when it is missing
_FIXTURES = {
    "source": "return the source under test: `return TicketsSource(...)`",
    "workspaces": "return two workspace ids, each with at least one visible document of the source",
    "edit": (
        "return a function edit(workspace_id) -> document id that changes the text (title or body) of one visible "
        "document of the workspace the way your users do, and returns that document's id"
    ),
    "hide": (
        "return a function hide(workspace_id) -> document id that makes one visible document of the workspace "
        "invisible the way your content gets hidden (archived, soft-deleted, moved out of reach), and returns its id"
    ),
}


class RuleBroken(AssertionError):
    """A source broke a rule of the contract; the message starts with ``rule '<the rule>':``."""


@contextmanager
def rule(name: str) -> Iterator[None]:
    """Name *name* in any failure of the block: an assertion, or an exception the source raised."""
    __tracebackhide__ = True  # pytest shows the failed assertion, not this wrapper
    try:
        yield
    except RuleBroken:
        raise
    except AssertionError as exc:
        raise RuleBroken(f"rule {name!r}: {exc}").with_traceback(exc.__traceback__) from None
    except Exception as exc:
        raise RuleBroken(f"rule {name!r}: {type(exc).__name__}: {exc}") from exc


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _round_trip(cursor: dict) -> dict:
    with rule(JSON_CURSOR):
        text = json.dumps(cursor)  # no default=: the cursor is JSON as it is
        again = json.loads(text)
        assert again == cursor, f"the cursor {cursor!r} changes through JSON (tuples, non-string keys?)"
    return again


def _scan(source: Source, workspace_id: str, cursor: dict | None, checking: str) -> tuple[list[Document], dict]:
    """Every document of ``changes(workspace_id, cursor)`` and its cursor, through JSON; an error names *checking*."""
    with rule(checking):
        changes = source.changes(workspace_id, cursor)
        documents = list(changes.documents)
        return documents, _round_trip(changes.cursor())


def _scan_state(source: Source) -> dict:
    """Where ``changed_workspaces`` stands now, through JSON."""
    with rule(CHANGED_WORKSPACES):
        _, state = source.changed_workspaces(None)
        return _round_trip(state)


def _ids(documents: Iterable[Document], deleted: bool | None = None) -> list[str]:
    return [document.id for document in documents if deleted is None or document.deleted == deleted]


def _text(document: Document) -> Document:
    """*document* without its version: what an edit must change."""
    return dataclasses.replace(document, updated_at=None)


def _fixture(request: pytest.FixtureRequest, name: str) -> Any:
    """The subclass's own fixture *name*, defined outside the class (module, conftest); a clear failure when none is."""
    try:
        return request.getfixturevalue(name)  # from inside the fixture of that name: the next definition outward
    except pytest.FixtureLookupError as exc:
        if exc.argname != name:  # the subclass's fixture asks for one that is missing: pytest's own error says which
            raise
        pytest.fail(
            f"SourceContract needs a fixture {name!r}: {_FIXTURES[name]} "
            f'(see pi_framework.testing.source_contract, or README\'s "Write a source")',
            pytrace=False,
        )


class SourceContract:
    """The behaviour :mod:`pi_framework.default_plugins.workspace_sync` relies on, for any workspace source."""

    #: ``True`` (the default): ``changes(ws, cursor)`` reports a document hidden since the cursor as ``deleted=True``,
    #: so the live sync removes it at once. Set it to ``False`` on your subclass only for a source that cannot see a
    #: document go (hard deletes, no tombstone, no ``updated_at`` on the way out) and relies on the reconcile, which
    #: removes what ``visible_ids`` stops naming every ``PI_RECONCILE_INTERVAL``: the kit then checks that the hidden
    #: document leaves ``iter_documents``, ``visible_ids`` and ``visible_versions`` and is never upserted, not that
    #: the cursor reports it. Until the reconcile runs, such a document stays searchable.
    reports_deletions: bool = True

    # ------------------------------------------------------------------ fixtures the subclass provides
    @pytest.fixture
    def source(self, request: pytest.FixtureRequest) -> Source:
        return _fixture(request, "source")

    @pytest.fixture
    def workspaces(self, request: pytest.FixtureRequest) -> tuple[str, str]:
        return _fixture(request, "workspaces")

    @pytest.fixture
    def edit(self, request: pytest.FixtureRequest) -> Callable[[str], str]:
        return _fixture(request, "edit")

    @pytest.fixture
    def hide(self, request: pytest.FixtureRequest) -> Callable[[str], str]:
        return _fixture(request, "hide")

    # ------------------------------------------------------------------ the rules
    def test_is_a_complete_workspace_source_with_an_accepted_name(self, source: Source) -> None:
        with rule(COMPLETE):
            assert isinstance(source, Source), "every method of the protocol is required (BaseSource gives two defaults)"
            assert source.scope == "workspace", f"scope is {source.scope!r}: the framework syncs 'workspace' sources"
            assert source.name and source.kind, "a source has a name and a kind"
            reserved = runtime.get_registry().reserved_state_names  # the installed plugins' own rows
            assert source_name_problem(source, reserved) is None, source_name_problem(source, reserved)

    def test_documents_are_namespaced_unique_and_stay_in_their_workspace(self, source: Source, workspaces) -> None:
        seen: set[str] = set()
        for workspace_id in workspaces:
            with rule(NAMESPACED):
                documents = list(source.iter_documents(workspace_id))
                assert documents, f"fixture workspace {workspace_id} has no document"
                for document in documents:
                    assert document.id.startswith(f"{source.name}:"), f"{document.id} does not start with {source.name}:"
                    assert document.source == source.name and document.kind == source.kind, document
                    assert document.workspace_id == workspace_id, f"{document.id} crossed into {workspace_id}"
                    assert not document.deleted, f"iter_documents yielded the deletion of {document.id}"
                    assert document.id not in seen, f"duplicate id {document.id}"
                    seen.add(document.id)

    def test_visible_ids_and_versions_agree_with_documents(self, source: Source, workspaces) -> None:
        for workspace_id in workspaces:
            with rule(AGREE):
                documents = {document.id: _utc(document.updated_at) for document in source.iter_documents(workspace_id)}
                ids = set(source.visible_ids(workspace_id))
                assert ids == set(documents), f"visible_ids {sorted(ids)} but iter_documents {sorted(documents)}"
                versions = {document_id: _utc(version) for document_id, version in source.visible_versions(workspace_id)}
                assert set(versions) == set(documents), (
                    f"visible_versions {sorted(versions)} but iter_documents {sorted(documents)}"
                )
                stale = {
                    doc: (version, documents[doc]) for doc, version in versions.items() if version not in (None, documents[doc])
                }
                assert not stale, f"visible_versions disagrees with the documents' updated_at (re-indexed forever): {stale}"

    def test_a_full_change_scan_yields_every_visible_document_of_its_workspace_only(self, source: Source, workspaces) -> None:
        for workspace_id in workspaces:
            with rule(FULL_SCAN):
                changes = source.changes(workspace_id, None)
                documents = list(changes.documents)
                missing = set(source.visible_ids(workspace_id)) - set(_ids(documents, deleted=False))
                assert not missing, f"changes(ws, None) must yield every visible document; it left out {sorted(missing)}"
                for document in documents:
                    assert document.source == source.name and document.kind == source.kind, document
                    assert document.workspace_id == workspace_id, f"{document.id} crossed into {workspace_id}"
            _round_trip(changes.cursor())

    def test_a_scan_from_a_json_round_tripped_cursor_with_nothing_changed_yields_nothing(
        self, source: Source, workspaces
    ) -> None:
        workspace_id = workspaces[0]
        _, cursor = _scan(source, workspace_id, None, FULL_SCAN)
        with rule(NOTHING_CHANGED):
            again = source.changes(workspace_id, cursor)
            reported = _ids(again.documents)
            assert not reported, f"nothing changed, yet the scan from the cursor reported {reported} (is the cursor ignored?)"
        _round_trip(again.cursor())

    def test_an_edit_comes_back_from_the_cursor_with_a_newer_updated_at(
        self, source: Source, workspaces, edit: Callable[[str], str]
    ) -> None:
        workspace_id = workspaces[0]
        first, cursor = _scan(source, workspace_id, None, FULL_SCAN)
        before = {document.id: document for document in first if not document.deleted}
        scan_state = _scan_state(source)
        edited = edit(workspace_id)
        assert edited in before, f"fixture 'edit' returned {edited!r}, not the id of a visible document of {workspace_id}"
        with rule(CHANGED_WORKSPACES):
            named, _ = source.changed_workspaces(scan_state)
            assert named is None or workspace_id in named, f"changed_workspaces named {named}, not {workspace_id}"
        since, after_cursor = _scan(source, workspace_id, cursor, EDIT_COMES_BACK)
        with rule(EDIT_COMES_BACK):
            upserts = {document.id: document for document in since if not document.deleted}
            assert edited in upserts, (
                f"{edited} was edited, yet the scan from the cursor did not yield it (it reported {_ids(since)}): "
                "the live sync never sees the edit"
            )
            after = upserts[edited]
            assert after.workspace_id == workspace_id and after.source == source.name, after
            assert _text(after) != _text(before[edited]), f"{edited} came back with its old text (read from a stale copy?)"
            now = {document.id: document for document in source.iter_documents(workspace_id)}
            assert edited in now and _text(now[edited]) == _text(after), f"iter_documents does not show the edit of {edited}"
            others = sorted(set(_ids(since)) - {edited})
            assert not others, f"only {edited} changed, yet the scan from the cursor reported {others} (is the cursor ignored?)"
        with rule(EDIT_IS_NEWER):
            old, new = _utc(before[edited].updated_at), _utc(after.updated_at)
            if old is not None:
                assert new is not None, f"{edited} had updated_at {old} and came back with none"
                assert new > old, (
                    f"{edited} came back with updated_at {new}, not newer than {old}: a re-feed skips it as already "
                    "indexed and the live sync does not count it as pending"
                )
            assert _utc(now[edited].updated_at) == new, f"iter_documents gives {edited} updated_at {now[edited].updated_at}"
            version = dict(source.visible_versions(workspace_id)).get(edited)
            assert version is None or _utc(version) == new, f"visible_versions still gives {edited} the version {version}"
        with rule(REPORTED_ONCE):
            again = _ids(source.changes(workspace_id, after_cursor).documents)
            assert not again, f"the edit of {edited} was reported, yet the scan from the next cursor reported {again}"

    def test_a_hidden_document_comes_back_from_the_cursor_as_deleted_and_never_as_an_upsert(
        self, source: Source, workspaces, hide: Callable[[str], str]
    ) -> None:
        workspace_id = workspaces[0]
        first, cursor = _scan(source, workspace_id, None, FULL_SCAN)
        scan_state = _scan_state(source)
        hidden = hide(workspace_id)
        assert hidden in _ids(first, deleted=False), (
            f"fixture 'hide' returned {hidden!r}, not the id of a visible document of {workspace_id}"
        )
        with rule(CHANGED_WORKSPACES):
            named, _ = source.changed_workspaces(scan_state)
            assert named is None or workspace_id in named, f"changed_workspaces named {named}, not {workspace_id}"
        with rule(HIDDEN_LEAVES):
            assert hidden not in _ids(source.iter_documents(workspace_id)), f"iter_documents still yields {hidden}"
            assert hidden not in set(source.visible_ids(workspace_id)), f"visible_ids still names {hidden}"
            assert hidden not in {doc for doc, _ in source.visible_versions(workspace_id)}, f"visible_versions names {hidden}"
        since, after_cursor = _scan(source, workspace_id, cursor, NEVER_UPSERTED)
        with rule(NEVER_UPSERTED):
            full = source.changes(workspace_id, None)
            assert hidden not in _ids(full.documents, deleted=False), f"changes(ws, None) upserts {hidden}"
            assert hidden not in _ids(since, deleted=False), f"a hidden document upserted: {hidden}, from the cursor"
        if self.reports_deletions:
            with rule(DELETION_COMES_BACK):
                assert hidden in _ids(since, deleted=True), (
                    f"{hidden} was hidden, yet the scan from the cursor did not report its deletion (it reported "
                    f"{_ids(since)}): it stays searchable until the reconcile. A source that cannot see a document go "
                    "sets reports_deletions = False on its SourceContract subclass"
                )
        with rule(NOTHING_CHANGED):
            others = sorted(set(_ids(since)) - {hidden})
            assert not others, f"only {hidden} changed, yet the scan from the cursor reported {others} (is the cursor ignored?)"
        with rule(REPORTED_ONCE):
            again = _ids(source.changes(workspace_id, after_cursor).documents)
            assert not again, f"{hidden} was hidden, yet the scan from the next cursor reported {again}"
