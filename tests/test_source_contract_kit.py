"""The source contract kit catches the mistakes a new author makes: run against in-memory sources, a correct one passes
every rule, and each broken one fails the rule it breaks, by name (issue 20: a source that never reports deletions
and one that never re-emits an edited document both passed the kit before)."""

from __future__ import annotations

import dataclasses
import inspect
from datetime import UTC, datetime, timedelta

import pytest

from pi_framework.api import BaseSource, Changes, Document
from pi_framework.testing.source_contract import RULES, SourceContract

pytest_plugins = ["pytester"]

START = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


@dataclasses.dataclass
class Note:
    id: str
    workspace_id: str
    title: str
    body: str
    version: int  # every write takes the next one
    created_at: datetime
    updated_at: datetime
    hidden: bool = False


class Notes:
    """In-memory content: notes in workspaces; every write takes the next version, one second later than the last."""

    def __init__(self) -> None:
        self.notes: dict[str, Note] = {}
        self.version = 0

    def tick(self) -> tuple[int, datetime]:
        self.version += 1
        return self.version, START + timedelta(seconds=self.version)

    def add(self, workspace_id: str, title: str, body: str) -> str:
        version, now = self.tick()
        note_id = f"n{version}"
        self.notes[note_id] = Note(note_id, workspace_id, title, body, version, now, now)
        return note_id

    def write(self, note_id: str, **values) -> None:
        version, now = self.tick()
        self.notes[note_id] = dataclasses.replace(self.notes[note_id], version=version, updated_at=now, **values)

    def of(self, workspace_id: str) -> list[Note]:
        return sorted((note for note in self.notes.values() if note.workspace_id == workspace_id), key=lambda n: n.version)


class NotesSource(BaseSource):
    """A correct source: the cursor is the last version read, a note hidden since it comes back as ``deleted=True``."""

    name = kind = "notes"

    def __init__(self, notes: Notes) -> None:
        self.notes = notes

    def stamp(self, note: Note) -> datetime:
        return note.updated_at

    def document(self, note: Note) -> Document:
        return Document(id=f"notes:{note.id}", source=self.name, kind=self.kind, workspace_id=note.workspace_id,
                        title=note.title, body=note.body, updated_at=self.stamp(note), deleted=note.hidden)  # fmt: skip

    def iter_documents(self, workspace_id):
        return (self.document(note) for note in self.notes.of(workspace_id) if not note.hidden)

    def visible_ids(self, workspace_id):
        return (document.id for document in self.iter_documents(workspace_id))

    def visible_versions(self, workspace_id):
        return ((document.id, document.updated_at) for document in self.iter_documents(workspace_id))

    def changes(self, workspace_id, cursor):
        seen = {"version": (cursor or {}).get("version", 0)}

        def documents():
            for note in self.notes.of(workspace_id):
                if note.version > seen["version"]:
                    seen["version"] = note.version
                    if cursor is not None or not note.hidden:
                        yield self.document(note)

        return Changes(documents(), cursor=lambda: dict(seen))


class NeverReportsDeletions(NotesSource):
    """The author's first: ``changes`` reads visible notes only, so a note hidden since the cursor is simply gone."""

    def changes(self, workspace_id, cursor):
        changes = super().changes(workspace_id, cursor)
        return Changes((document for document in changes.documents if not document.deleted), cursor=changes.cursor)


class NeverReEmitsEdits(NotesSource):
    """The author's second: the cursor is the set of ids already seen, so new notes and deletions come back, edits not."""

    def changes(self, workspace_id, cursor):
        known = set((cursor or {}).get("ids", []))
        visible = {document.id: document for document in self.iter_documents(workspace_id)}

        def documents():
            yield from (document for document_id, document in visible.items() if document_id not in known)
            if cursor is not None:
                for document_id in sorted(known - set(visible)):
                    yield Document(id=document_id, source=self.name, kind=self.kind, workspace_id=workspace_id, deleted=True)

        return Changes(documents(), cursor=lambda: {"ids": sorted(visible)})


class StaleUpdatedAt(NotesSource):
    """Re-emits an edit, but stamps every document with its creation time: a re-feed would skip the edit."""

    def stamp(self, note: Note) -> datetime:
        return note.created_at


class StillNamesHidden(NeverReportsDeletions):
    """Relies on the reconcile for deletions, yet ``visible_ids`` still names hidden notes: nothing ever removes them."""

    def visible_ids(self, workspace_id):
        return (f"notes:{note.id}" for note in self.notes.of(workspace_id))

    def visible_versions(self, workspace_id):
        return ((document_id, None) for document_id in self.visible_ids(workspace_id))


class World:
    """Two workspaces of two notes each, the source under test over them, and the kit's ``edit`` and ``hide``."""

    def __init__(self, source_class: type[NotesSource]) -> None:
        self.notes = Notes()
        self.workspaces = ("ws-a", "ws-b")
        for workspace_id in self.workspaces:
            self.notes.add(workspace_id, "Release checklist", "Tag, build, ship.")
            self.notes.add(workspace_id, "Onboarding guide", "Accounts, laptop, first ticket.")
        self.source = source_class(self.notes)

    def first(self, workspace_id: str) -> str:
        return next(note.id for note in self.notes.of(workspace_id) if not note.hidden)

    def edit(self, workspace_id: str) -> str:
        note_id = self.first(workspace_id)
        self.notes.write(note_id, title="Release checklist v2", body="Tag, build, test, ship.")
        return f"notes:{note_id}"

    def hide(self, workspace_id: str) -> str:
        note_id = self.first(workspace_id)
        self.notes.write(note_id, hidden=True)
        return f"notes:{note_id}"

    def fixtures(self) -> dict:
        return {"source": self.source, "workspaces": self.workspaces, "edit": self.edit, "hide": self.hide}


class ReconcileOnly(SourceContract):
    reports_deletions = False


def failures(contract: type[SourceContract], source_class: type[NotesSource]) -> dict[str, str]:
    """Run every test of *contract* against *source_class* (a fresh world each): ``test name -> failure message``."""
    failed = {}
    for name, method in inspect.getmembers(contract, inspect.isfunction):
        if not name.startswith("test_"):
            continue
        fixtures = World(source_class).fixtures()
        arguments = {parameter: fixtures[parameter] for parameter in list(inspect.signature(method).parameters)[1:]}
        try:
            method(contract(), **arguments)
        except AssertionError as exc:
            failed[name] = str(exc)
    return failed


EDIT = "test_an_edit_comes_back_from_the_cursor_with_a_newer_updated_at"
HIDE = "test_a_hidden_document_comes_back_from_the_cursor_as_deleted_and_never_as_an_upsert"


# ---------------------------------------------------------------------- a correct source passes, as a subclass would run it
class TestACorrectInMemorySourcePassesTheKit(SourceContract):
    @pytest.fixture
    def world(self) -> World:
        return World(NotesSource)

    @pytest.fixture
    def source(self, world):
        return world.source

    @pytest.fixture
    def workspaces(self, world):
        return world.workspaces

    @pytest.fixture
    def edit(self, world):
        return world.edit

    @pytest.fixture
    def hide(self, world):
        return world.hide


# ---------------------------------------------------------------------- each broken source fails the rule it breaks
@pytest.mark.parametrize(
    ("contract", "source_class", "broken"),
    [
        (SourceContract, NotesSource, {}),
        (SourceContract, NeverReportsDeletions, {HIDE: "a hidden document comes back from the cursor as deleted=True"}),
        (SourceContract, NeverReEmitsEdits, {EDIT: "an edit comes back from the cursor"}),
        (SourceContract, StaleUpdatedAt, {EDIT: "an edit comes back with a newer updated_at"}),
        (ReconcileOnly, NeverReportsDeletions, {}),  # the opt-out: deletions left to the reconcile
        (ReconcileOnly, StillNamesHidden, {HIDE: "a hidden document leaves iter_documents, visible_ids and visible_versions"}),
    ],
    ids=["correct", "never-reports-deletions", "never-re-emits-edits", "stale-updated-at", "opted-out", "opted-out-but-visible"],
)
def test_each_broken_source_fails_exactly_the_rule_it_breaks(contract, source_class, broken) -> None:
    failed = failures(contract, source_class)
    assert set(failed) == set(broken), failed
    for test_name, rule_name in broken.items():
        assert failed[test_name].startswith(f"rule '{rule_name}': "), failed[test_name]
        assert rule_name in RULES


def test_the_failures_say_what_went_wrong_and_what_to_do() -> None:
    deletions = failures(SourceContract, NeverReportsDeletions)[HIDE]
    assert "notes:n1 was hidden, yet the scan from the cursor did not report its deletion" in deletions
    assert "sets reports_deletions = False on its SourceContract subclass" in deletions
    edits = failures(SourceContract, NeverReEmitsEdits)[EDIT]
    assert "notes:n1 was edited, yet the scan from the cursor did not yield it (it reported [])" in edits
    stale = failures(SourceContract, StaleUpdatedAt)[EDIT]
    assert "not newer than 2025-03-03 09:00:01+00:00: a re-feed skips it" in stale


def test_a_source_that_raises_fails_with_the_rule_it_was_checking() -> None:
    class Crashing(NotesSource):
        def changed_workspaces(self, state, cursors=()):
            raise KeyError("watermark")

    failed = failures(SourceContract, Crashing)
    assert failed[EDIT] == "rule 'changed_workspaces names the workspace of a change': KeyError: 'watermark'"


# ---------------------------------------------------------------------- as a plugin author runs it: pytest, fixtures in conftest
class WithoutEdit:
    """The kit's fixtures at the top level, as a ``conftest.py`` gives them, for the runs below; all but ``edit``."""

    def __init__(self, source_class: type[NotesSource]) -> None:
        self.source_class = source_class

    @pytest.fixture
    def world(self) -> World:
        return World(self.source_class)

    @pytest.fixture
    def source(self, world):
        return world.source

    @pytest.fixture
    def workspaces(self, world):
        return world.workspaces

    @pytest.fixture
    def hide(self, world):
        return world.hide


class NotesFixtures(WithoutEdit):
    @pytest.fixture
    def edit(self, world):
        return world.edit


def run_kit(pytester: pytest.Pytester, fixtures: WithoutEdit, body: str = "pass") -> pytest.RunResult:
    """``pytest`` on a module subclassing the kit, with *fixtures* as its conftest (no other plugin: seconds saved)."""
    pytester.makepyfile(
        f"""
        from pi_framework.testing.source_contract import SourceContract

        class TestNotesSource(SourceContract):
            {body}
        """
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        return pytester.runpytest_inprocess("-p", "no:cacheprovider", plugins=[fixtures])


def test_a_run_of_the_kit_fails_a_source_that_never_reports_deletions_by_the_rule(pytester) -> None:
    result = run_kit(pytester, NotesFixtures(NeverReportsDeletions))
    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E * rule 'a hidden document comes back from the cursor as deleted=True': notes:n1 was hidden*",
            f"FAILED *::TestNotesSource::{HIDE}*",
        ]
    )


def test_a_run_of_the_kit_fails_a_source_that_never_re_emits_an_edit_by_the_rule(pytester) -> None:
    result = run_kit(pytester, NotesFixtures(NeverReEmitsEdits))
    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines(
        ["E * rule 'an edit comes back from the cursor': notes:n1 was edited*", f"FAILED *::TestNotesSource::{EDIT}*"]
    )


def test_the_opt_out_is_a_class_attribute_of_the_subclass(pytester) -> None:
    run_kit(pytester, NotesFixtures(NeverReportsDeletions), body="reports_deletions = False").assert_outcomes(passed=7)


def test_a_missing_fixture_says_what_to_write(pytester) -> None:
    result = run_kit(pytester, WithoutEdit(NotesSource))
    result.assert_outcomes(passed=6, errors=1)
    result.stdout.fnmatch_lines(["*SourceContract needs a fixture 'edit': return a function edit(workspace_id) -> document id*"])
