"""Contract tests every sink must pass. Subclass :class:`SinkContract` in a test module and provide a ``sink`` fixture::

    from pi_framework.testing.sink_contract import SinkContract

    class TestMySink(SinkContract):
        @pytest.fixture
        def sink(self, tmp_path):
            sink = MySink(...)            # empty, not yet ensure_ready()'d
            yield sink
            sink.close()

Set ``supports_vector_search = False`` on the subclass when the backend under test cannot answer
kNN queries (e.g. an OpenSearch without the k-NN plugin); the vector tests are then skipped with that reason. Text-search tests
assert which chunks match and their order, never exact scores.
"""

from __future__ import annotations

from typing import Any

import pytest

from pi_framework.contract.documents import Chunk
from pi_framework.contract.sinks import Filters, SearchQuery, Sink, SinkError

WS_A = "11111111-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
WS_B = "22222222-bbbb-4bbb-8bbb-bbbbbbbbbbbb"


class SinkContract:
    """The behaviour the pipeline and search rely on, for any :class:`~pi_framework.contract.sinks.Sink`."""

    dimension = 8
    supports_vector_search = True

    # ------------------------------------------------------------------ helpers
    @pytest.fixture
    def ready_sink(self, sink: Sink) -> Sink:
        sink.ensure_ready(self.dimension)
        return sink

    def vector(self, axis: int, tilt: float = 0.0) -> list[float]:
        """A unit-ish vector along *axis*, tilted towards the next axis by *tilt*."""
        values = [0.0] * self.dimension
        values[axis % self.dimension] = 1.0
        values[(axis + 1) % self.dimension] = tilt
        return values

    def chunk(self, chunk_id: str, workspace_id: str | None = WS_A, text: str = "some text", **fields: Any) -> Chunk:
        document_id = fields.pop("document_id", chunk_id.split("#")[0])
        values: dict[str, Any] = {
            "index": int(chunk_id.split("#")[1]) if "#" in chunk_id else 0,
            "content_hash": "h",
            "source": "issues",
            "kind": "issues",
            "title": "",
            "vector": self.vector(0),
        }
        values.update(fields)
        return Chunk(id=chunk_id, document_id=document_id, text=text, workspace_id=workspace_id, **values)

    def write_all(self, sink: Sink, chunks: list[Chunk]) -> None:
        result = sink.write(chunks)
        assert not result.failed, result.failed
        assert sorted(result.written) == sorted(chunk.id for chunk in chunks)

    @staticmethod
    def ids(hits) -> list[str]:  # noqa: ANN001 - list of Hit
        return [hit.chunk_id for hit in hits]

    # ------------------------------------------------------------------ writing
    def test_write_then_count_and_existing(self, ready_sink: Sink) -> None:
        self.write_all(ready_sink, [self.chunk("issues:1#0"), self.chunk("issues:1#1"), self.chunk("issues:2#0", WS_B)])
        assert ready_sink.count() == 3
        assert ready_sink.count(WS_A) == 2
        assert ready_sink.count(WS_B) == 1
        assert ready_sink.existing(["issues:1#0", "issues:2#0", "issues:9#0"]) == {"issues:1#0", "issues:2#0"}

    def test_overwrite_by_id_never_duplicates(self, ready_sink: Sink) -> None:
        self.write_all(ready_sink, [self.chunk("issues:1#0", text="old words")])
        self.write_all(ready_sink, [self.chunk("issues:1#0", text="fresh content")])
        assert ready_sink.count() == 1
        assert self.ids(ready_sink.search_text(SearchQuery(WS_A, text="fresh"))) == ["issues:1#0"]
        assert ready_sink.search_text(SearchQuery(WS_A, text="old")) == []

    def test_count_by_kind(self, ready_sink: Sink) -> None:
        self.write_all(ready_sink, [self.chunk("issues:1#0"), self.chunk("pages:1#0", kind="pages", source="pages")])
        assert ready_sink.count(WS_A, "pages") == 1
        assert ready_sink.count(kind="issues") == 1

    def test_chunk_without_vector_is_text_searchable(self, ready_sink: Sink) -> None:
        self.write_all(ready_sink, [self.chunk("chats:1#0", text="quarterly roadmap", vector=None, kind="chats")])
        assert self.ids(ready_sink.search_text(SearchQuery(WS_A, text="roadmap"))) == ["chats:1#0"]

    # ------------------------------------------------------------------ deleting
    def test_delete_chunks_by_id_ignores_missing(self, ready_sink: Sink) -> None:
        self.write_all(ready_sink, [self.chunk("issues:1#0"), self.chunk("issues:1#1")])
        ready_sink.delete_chunks(["issues:1#1", "issues:404#0"])
        assert ready_sink.existing(["issues:1#0", "issues:1#1"]) == {"issues:1#0"}
        ready_sink.delete_chunks([])

    def test_delete_workspace_leaves_other_workspaces_and_global(self, ready_sink: Sink) -> None:
        self.write_all(
            ready_sink,
            [
                self.chunk("issues:1#0", WS_A),
                self.chunk("pages:1#0", WS_A, kind="pages", source="pages"),
                self.chunk("issues:2#0", WS_B),
                self.chunk("docs:x#0", None, kind="docs", source="docs"),
            ],
        )
        assert ready_sink.delete_workspace(WS_A, kind="pages") == 1
        assert ready_sink.existing(["issues:1#0", "pages:1#0"]) == {"issues:1#0"}
        assert ready_sink.delete_workspace(WS_A) == 1
        assert ready_sink.count(WS_A) == 0
        assert ready_sink.existing(["issues:2#0", "docs:x#0"]) == {"issues:2#0", "docs:x#0"}

    # ------------------------------------------------------------------ searching
    def test_text_search_ranks_the_better_match_first(self, ready_sink: Sink) -> None:
        self.write_all(
            ready_sink,
            [
                self.chunk("issues:1#0", text="weekly meeting notes: budget, hiring, roadmap, and kubernetes was mentioned once"),
                self.chunk(
                    "issues:2#0", text="kubernetes deployment guide: kubernetes pods and kubernetes services", title="Kubernetes"
                ),
                self.chunk("issues:3#0", text="nothing relevant here at all"),
            ],
        )
        assert self.ids(ready_sink.search_text(SearchQuery(WS_A, text="kubernetes"))) == ["issues:2#0", "issues:1#0"]

    def test_text_search_respects_limit_and_kinds(self, ready_sink: Sink) -> None:
        self.write_all(
            ready_sink,
            [self.chunk(f"issues:{n}#0", text=f"invoice number {n}") for n in range(5)]
            + [self.chunk("pages:1#0", text="invoice template", kind="pages", source="pages")],
        )
        assert len(ready_sink.search_text(SearchQuery(WS_A, text="invoice", limit=3))) == 3
        assert self.ids(ready_sink.search_text(SearchQuery(WS_A, text="invoice", kinds=["pages"]))) == ["pages:1#0"]

    @pytest.mark.parametrize(
        "text",
        ["secret", f"secret workspace_id:{WS_B}", f'secret OR "{WS_B}"', "secret) OR (1=1", "secret* NEAR(x) ^ -", "*:*"],
    )
    def test_text_search_never_crosses_workspaces(self, ready_sink: Sink, text: str) -> None:
        self.write_all(ready_sink, [self.chunk("issues:2#0", WS_B, text=f"secret plans of {WS_B}")])
        assert ready_sink.search_text(SearchQuery(WS_A, text=text)) == []

    def test_global_content_is_found_from_every_workspace(self, ready_sink: Sink) -> None:
        self.write_all(ready_sink, [self.chunk("docs:guide#0", None, text="installation guide", kind="docs", source="docs")])
        for workspace in (WS_A, WS_B):
            hits = ready_sink.search_text(SearchQuery(workspace, text="installation"))
            assert self.ids(hits) == ["docs:guide#0"]
            assert hits[0].workspace_id is None

    def test_private_content_is_found_only_by_its_owner(self, ready_sink: Sink) -> None:
        self.write_all(
            ready_sink,
            [self.chunk("chats:1#0", text="salary negotiation", owner_id="user-1", kind="chats", source="chats")],
        )
        assert ready_sink.search_text(SearchQuery(WS_A, text="salary")) == []
        assert ready_sink.search_text(SearchQuery(WS_A, text="salary", user_id="user-2")) == []
        assert self.ids(ready_sink.search_text(SearchQuery(WS_A, text="salary", user_id="user-1"))) == ["chats:1#0"]

    def test_hits_carry_the_chunk_fields(self, ready_sink: Sink) -> None:
        self.write_all(
            ready_sink,
            [self.chunk("issues:7#0", text="printer on fire", title="Printer", key="OPS-7", url="https://x/OPS-7")],
        )
        (hit,) = ready_sink.search_text(SearchQuery(WS_A, text="printer"))
        assert (hit.document_id, hit.kind, hit.title, hit.key, hit.url, hit.workspace_id) == (
            "issues:7",
            "issues",
            "Printer",
            "OPS-7",
            "https://x/OPS-7",
            WS_A,
        )
        assert "printer on fire" in hit.text

    # ------------------------------------------------------------------ through the pipeline
    def test_no_chunk_outlives_a_crash_between_sink_write_and_ledger_commit(
        self, ready_sink: Sink, tmp_path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A document written with 3 chunks, the process dying before the ledger commit, then rewritten shorter
        (and private): no chunk of the first version remains, whether or not the ledger ever recorded it."""
        from pi_framework.contract.documents import Document
        from pi_framework.db import Database
        from pi_framework.embedding import HashingEmbedder
        from pi_framework.pipeline.indexer import Indexer
        from pi_framework.pipeline.ledger import Ledger
        from pi_framework.settings import Settings

        settings = Settings(PI_DATA_DIR=str(tmp_path), PI_CHUNK_TOKENS=16, PI_CHUNK_OVERLAP=0)
        indexer = Indexer([ready_sink], HashingEmbedder(dimension=self.dimension), Database(settings), settings)
        long_body = " ".join(f"paragraph {n} about the zebra migration plan." for n in range(12))
        first = Document("pages:p1", "pages", "pages", WS_A, title="Plan", body=long_body)
        written = [chunk.id for chunk in indexer.chunks_of(first)]
        assert len(written) >= 3

        class Killed(BaseException):
            """The worker dies (SIGKILL): nothing after the sink write runs."""

        def die(_self: Ledger, _update: object, _fence: object = None) -> None:
            raise Killed

        with monkeypatch.context() as patch:
            patch.setattr(Ledger, "apply", die)
            with pytest.raises(Killed):
                indexer.index([first])
        assert ready_sink.existing(written) == set(written), "the sink had the first version when the worker died"

        second = Document("pages:p1", "pages", "pages", WS_A, title="Plan", body="short now", owner_id="owner-1")
        stats = indexer.index([second])
        assert stats.documents_indexed == 1 and not stats.failed
        kept = {chunk.id for chunk in indexer.chunks_of(second)}
        assert ready_sink.existing(written) == kept & set(written), "no chunk of the first version is left"
        assert ready_sink.search_text(SearchQuery(WS_A, text="zebra", user_id="someone-else")) == []

    # ------------------------------------------------------------------ reading back
    def test_chunks_read_back_by_document_and_by_workspace_whole_and_streamed(self, ready_sink: Sink) -> None:
        """``read_chunks`` gives back what was written (vectors included: tools move chunks without re-embedding them),
        by document or by workspace, never another workspace's, in pages rather than all at once."""
        many = [
            self.chunk(f"issues:{n}#{i}", text=f"text {n} {i}", vector=self.vector(i, tilt=0.25), title=f"T{n}")
            for n in range(120)
            for i in range(5)
        ]
        private = self.chunk(
            "pages:p#0",
            kind="pages",
            source="pages",
            key="WEB-1",
            url="https://plane.example/p",
            owner_id="owner-1",
            project_ids=["p1", "p2"],
            metadata={"created_by": "u1", "state": "open"},
            vector=self.vector(3),
        )
        self.write_all(ready_sink, [*many, private, self.chunk("issues:other#0", WS_B)])
        (back,) = ready_sink.read_chunks(documents=["pages:p"])
        assert (back.id, back.document_id, back.index, back.text, back.kind, back.source, back.workspace_id) == (
            "pages:p#0",
            "pages:p",
            0,
            "some text",
            "pages",
            "pages",
            WS_A,
        )
        assert (back.key, back.url, back.owner_id, sorted(back.project_ids), back.metadata) == (
            "WEB-1",
            "https://plane.example/p",
            "owner-1",
            ["p1", "p2"],
            {"created_by": "u1", "state": "open"},
        )
        assert back.vector is not None and len(back.vector) == self.dimension and max(back.vector) > 0.5
        stream = ready_sink.read_chunks(workspace_id=WS_A)
        assert not isinstance(stream, list | tuple), "streamed, not a list"
        everything = list(stream)
        assert sorted(chunk.id for chunk in everything) == sorted([chunk.id for chunk in many] + ["pages:p#0"])
        assert {chunk.id for chunk in ready_sink.read_chunks(documents=["issues:3", "issues:other"])} == {
            *(f"issues:3#{i}" for i in range(5)),
            "issues:other#0",
        }
        assert list(ready_sink.read_chunks(documents=["issues:missing"])) == []
        with pytest.raises(ValueError):
            list(ready_sink.read_chunks())

    def test_global_chunks_read_back_with_the_version_they_were_written_with(self, ready_sink: Sink) -> None:
        """``read_chunks(global_chunks=True)`` gives the chunks without a workspace, and every chunk read back carries
        the version it was stored with (a model change copies chunks with it, so a newer write always wins)."""
        assert ready_sink.write([self.chunk("docs:a#0", None, kind="docs", source="docs")], version=7).written
        assert ready_sink.write([self.chunk("issues:w#0")], version=11).written
        (doc,) = ready_sink.read_chunks(global_chunks=True)
        assert (doc.id, doc.workspace_id, doc.version) == ("docs:a#0", None, 7)
        (issue,) = ready_sink.read_chunks(workspace_id=WS_A)
        assert issue.version == 11
        with pytest.raises(ValueError):
            list(ready_sink.read_chunks(workspace_id=WS_A, global_chunks=True))

    def test_another_generation_shares_nothing_and_drop_removes_it(self, ready_sink: Sink) -> None:
        """``for_generation`` stores beside this sink without seeing or touching its chunks, in any vector size (a
        model change); ``drop`` removes that generation and nothing of this one."""
        self.write_all(ready_sink, [self.chunk("issues:live#0", text="the live generation")])
        other = ready_sink.for_generation("gtest")
        try:
            other.ensure_ready(self.dimension + 4)
            moved = self.chunk("issues:new#0", text="the new generation", vector=[0.5] * (self.dimension + 4))
            assert other.write([moved]).written == ["issues:new#0"]
            assert other.count() == 1 and ready_sink.count() == 1
            assert ready_sink.existing(["issues:new#0"]) == set() and other.existing(["issues:live#0"]) == set()
            assert other.delete_workspace(WS_A) == 1 and ready_sink.count() == 1
            assert other.write([moved]).written
            query = SearchQuery(workspace_id=WS_A, text="generation", limit=5)
            assert self.ids(other.search_text(query)) == ["issues:new#0"]
            assert self.ids(ready_sink.search_text(query)) == ["issues:live#0"]
        finally:
            other.drop()
        assert other.for_generation("gtest").count() == 0, "dropped"
        assert ready_sink.count() == 1 and ready_sink.existing(["issues:live#0"]) == {"issues:live#0"}

    # ------------------------------------------------------------------ fencing
    def test_an_older_version_never_replaces_or_deletes_a_newer_one(self, ready_sink: Sink) -> None:
        """Versioned writes and deletes (the pipeline writes with its lease's fencing token): a smaller version is
        refused over a larger one, the same version goes through, and a versioned delete keeps refusing older writes."""
        assert ready_sink.write([self.chunk("issues:1#0", text="newer words")], version=20).written == ["issues:1#0"]
        stale = ready_sink.write([self.chunk("issues:1#0", text="older words")], version=10)
        assert stale.superseded == ["issues:1#0"] and not stale.written and not stale.failed
        ready_sink.delete_chunks(["issues:1#0"], version=10)
        ready_sink.delete_documents(["issues:1"], version=10)
        assert ready_sink.existing(["issues:1#0"]) == {"issues:1#0"}, "an older delete left the newer chunk alone"
        assert self.ids(ready_sink.search_text(SearchQuery(WS_A, text="newer"))) == ["issues:1#0"]
        assert ready_sink.search_text(SearchQuery(WS_A, text="older")) == []
        assert ready_sink.write([self.chunk("issues:1#0", text="newest words")], version=20).written == ["issues:1#0"]
        assert ready_sink.delete_documents(["issues:1"], version=30) == 1
        late = ready_sink.write([self.chunk("issues:1#0", text="older words")], version=20)
        assert "issues:1#0" in late.superseded, "a write older than the delete does not bring the chunk back"
        assert ready_sink.existing(["issues:1#0"]) == set()
        ready_sink.delete_chunks(["issues:2#0"], version=30)  # absent: the delete still fences it
        assert "issues:2#0" in ready_sink.write([self.chunk("issues:2#0")], version=25).superseded
        self.write_all(ready_sink, [self.chunk("issues:1#0", text="rewritten in place")])  # no version: unconditional
        assert ready_sink.existing(["issues:1#0"]) == {"issues:1#0"}

    def test_a_writer_stalled_past_its_lease_never_puts_its_older_version_back(
        self, ready_sink: Sink, tmp_path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A live sync held between embedding and its sink write (a GC pause, a slow sink, SIGSTOP) past its lease, while
        its successor writes the newer version (the page made private): the newer version wins in the sink and the
        ledger, the stalled writer ends with LeaseLost, and no one but the owner finds the page."""
        from datetime import timedelta

        from sqlalchemy import update

        from pi_framework.contract.documents import Document
        from pi_framework.db import Database
        from pi_framework.db.fencing import LeaseLost
        from pi_framework.db.models import Lease, utcnow
        from pi_framework.embedding import HashingEmbedder
        from pi_framework.pipeline.indexer import Indexer
        from pi_framework.pipeline.ledger import Ledger
        from pi_framework.settings import Settings
        from pi_framework.sync.leases import Leases
        from pi_framework.testing.stall import stalled_at_sink_write

        settings = Settings(PI_DATA_DIR=str(tmp_path), PI_CHUNK_TOKENS=16, PI_CHUNK_OVERLAP=0)
        database, embedder = Database(settings), HashingEmbedder(dimension=self.dimension)
        leases = Leases(database, seconds=30)
        body = " ".join(f"paragraph {n} about the zebra migration plan." for n in range(6))
        public = Document("pages:p1", "pages", "pages", WS_A, title="Plan", body=body)
        private = Document("pages:p1", "pages", "pages", WS_A, title="Plan", body=body, owner_id="owner-1")

        stalled_fence = leases.fence("live:contract", "stalled")
        assert stalled_fence is not None
        stalled = Indexer([ready_sink], embedder, database, settings, fence=stalled_fence)
        with stalled_at_sink_write(ready_sink, monkeypatch, lambda: stalled.index([public])) as outcome:
            with database.session() as session:  # it renewed nothing for longer than its lease
                session.execute(update(Lease).values(expires_at=utcnow() - timedelta(seconds=1)))
            successor_fence = leases.fence("live:contract", "successor")
            assert successor_fence is not None and successor_fence.token > stalled_fence.token
            successor = Indexer([ready_sink], embedder, database, settings, fence=successor_fence)
            assert successor.index([private]).documents_indexed == 1
        assert isinstance(outcome.get("error"), LeaseLost), f"the stalled writer must learn it lost its lease, got {outcome}"
        expected = {chunk.id: chunk.content_hash for chunk in successor.chunks_of(private)}
        assert ready_sink.existing(list(expected)) == set(expected), "the newer version is whole"
        assert ready_sink.search_text(SearchQuery(WS_A, text="zebra", user_id="someone-else")) == []
        assert ready_sink.search_text(SearchQuery(WS_A, text="zebra", user_id="owner-1"))
        assert Ledger(database).lookup(["pages:p1"])["pages:p1"].hashes == expected
        database.dispose()

    def test_ensure_ready_rejects_another_dimension(self, ready_sink: Sink) -> None:
        self.write_all(ready_sink, [self.chunk("issues:1#0")])
        with pytest.raises(SinkError):
            ready_sink.ensure_ready(self.dimension * 2)

    # ------------------------------------------------------------------ vectors
    def _need_vectors(self) -> None:
        if not self.supports_vector_search:
            pytest.skip(f"{type(self).__name__}: the backend under test cannot answer kNN queries")

    def test_vector_search_nearest_first_and_filtered(self, ready_sink: Sink) -> None:
        self._need_vectors()
        self.write_all(
            ready_sink,
            [
                self.chunk("issues:1#0", vector=self.vector(1)),
                self.chunk("issues:2#0", vector=self.vector(0, tilt=0.5)),
                self.chunk("issues:3#0", vector=self.vector(0)),
                self.chunk("issues:4#0", WS_B, vector=self.vector(0)),
                self.chunk("chats:5#0", vector=self.vector(0), owner_id="user-1", kind="chats", source="chats"),
                self.chunk("docs:6#0", None, vector=self.vector(0, tilt=2.0), kind="docs", source="docs"),
            ],
        )
        hits = ready_sink.search_vector(SearchQuery(WS_A, vector=self.vector(0), limit=3))
        assert self.ids(hits) == ["issues:3#0", "issues:2#0", "docs:6#0"]
        assert hits[0].score > hits[1].score > hits[2].score
        owner = ready_sink.search_vector(SearchQuery(WS_A, vector=self.vector(0), user_id="user-1", kinds=["chats"]))
        assert self.ids(owner) == ["chats:5#0"]

    def test_vector_search_sees_deletes(self, ready_sink: Sink) -> None:
        self._need_vectors()
        self.write_all(ready_sink, [self.chunk("issues:1#0"), self.chunk("issues:2#0", vector=self.vector(3))])
        assert self.ids(ready_sink.search_vector(SearchQuery(WS_A, vector=self.vector(0), limit=1))) == ["issues:1#0"]
        ready_sink.delete_chunks(["issues:1#0"])
        assert self.ids(ready_sink.search_vector(SearchQuery(WS_A, vector=self.vector(0), limit=1))) == ["issues:2#0"]

    # ------------------------------------------------------------------ Plane's filters and metadata updates
    def _plane_items(self) -> list[Chunk]:
        """Work items: 30 that match nothing below, then four with Plane's filter fields."""

        def item(number: int, **metadata: Any) -> Chunk:
            base = {"project_id": "p-web", "project_identifier": "WEB", "state_group": "backlog", "priority": "none"}
            return self.chunk(f"issues:{number}#0", text=f"login page broken {number}", metadata={**base, **metadata})

        noise = [item(100 + n, state="Backlog") for n in range(30)]
        return [
            *noise,
            item(1, state="In Progress", state_group="started", priority="high", labels=["bug", "ui"], assignees=["u-1"]),
            item(2, state="Done", state_group="completed", priority="low", labels=["bug"], assignees=["u-1", "u-2"]),
            item(
                3,
                state="In Progress",
                state_group="started",
                priority="urgent",
                labels=[],
                assignees=["u-2"],
                project_id="p-api",
                project_identifier="API",
            ),
            self.chunk("pages:9#0", text="login page broken notes", kind="pages", source="pages"),
        ]

    def test_plane_filters_apply_inside_the_sink(self, ready_sink: Sink) -> None:
        """Any value within a field, every field given; a limit of 2 still returns both matches among 34 chunks (the
        filter runs in the sink, not on a shortened page); a chunk without the field never matches."""
        self.write_all(ready_sink, self._plane_items())

        def found(limit: int = 2, **filters: Any) -> set[str]:
            query = SearchQuery(WS_A, text="login page broken", limit=limit, filters=Filters(**filters))
            return set(self.ids(ready_sink.search_text(query)))

        assert found(state=["In Progress"]) == {"issues:1#0", "issues:3#0"}
        assert found(state_group=["completed"]) == {"issues:2#0"}
        assert found(priority=["urgent", "low"]) == {"issues:2#0", "issues:3#0"}
        assert found(labels=["ui"]) == {"issues:1#0"}
        assert found(labels=["bug"]) == {"issues:1#0", "issues:2#0"}
        assert found(assignees=["u-2"]) == {"issues:2#0", "issues:3#0"}
        assert found(assignees=["u-1"], state_group=["started"]) == {"issues:1#0"}
        assert found(project=["API"]) == {"issues:3#0"}
        assert found(project=["p-api"]) == {"issues:3#0"}
        assert found(labels=["nothing-has-it"]) == set()
        assert found(labels=[]) == set()
        assert len(found(limit=50)) == 34, "no filter: every chunk"
        assert "pages:9#0" not in found(limit=50, priority=["none", "high", "low", "urgent"])
        if self.supports_vector_search:
            query = SearchQuery(WS_A, vector=self.vector(0), limit=2, filters=Filters(assignees=["u-2"]))
            assert set(self.ids(ready_sink.search_vector(query))) == {"issues:2#0", "issues:3#0"}

    def test_update_metadata_changes_filters_not_text_or_vector(self, ready_sink: Sink) -> None:
        first = self.chunk("issues:1#0", text="checkout times out", metadata={"state": "Todo", "labels": ["bug"], "x": 1})
        self.write_all(ready_sink, [first, self.chunk("issues:2#0", text="checkout is slow", vector=self.vector(2))])
        result = ready_sink.update_metadata([("issues:1#0", {"state": "Done", "labels": ["ui", "perf"], "x": 2})])
        assert result.written == ["issues:1#0"] and not result.failed
        missing = ready_sink.update_metadata([("issues:404#0", {"state": "Done"})])
        assert "issues:404#0" in missing.failed and missing.written == []

        def found(**filters: Any) -> list[str]:
            return self.ids(ready_sink.search_text(SearchQuery(WS_A, text="checkout", filters=Filters(**filters))))

        assert found(state=["Todo"]) == [] and found(labels=["bug"]) == []
        assert found(state=["Done"]) == ["issues:1#0"] and found(labels=["perf"]) == ["issues:1#0"]
        (stored,) = ready_sink.read_chunks(documents=["issues:1"])
        assert stored.metadata == {"state": "Done", "labels": ["ui", "perf"], "x": 2}
        assert (stored.text, stored.vector) == ("checkout times out", first.vector)
        (hit,) = ready_sink.search_text(SearchQuery(WS_A, text="times", filters=Filters(state=["Done"])))
        assert hit.metadata["state"] == "Done"
        if self.supports_vector_search:
            vector_query = SearchQuery(WS_A, vector=self.vector(0), limit=5, filters=Filters(labels=["ui"]))
            assert self.ids(ready_sink.search_vector(vector_query)) == ["issues:1#0"]

    def test_update_metadata_is_versioned_like_a_write(self, ready_sink: Sink) -> None:
        assert ready_sink.write([self.chunk("issues:1#0", metadata={"state": "A"})], version=20).written == ["issues:1#0"]
        stale = ready_sink.update_metadata([("issues:1#0", {"state": "stale"})], version=10)
        assert stale.superseded == ["issues:1#0"] and stale.written == []
        assert ready_sink.update_metadata([("issues:1#0", {"state": "B"})], version=20).written == ["issues:1#0"]
        assert ready_sink.write([self.chunk("issues:1#0", metadata={"state": "C"})], version=20).written == ["issues:1#0"], (
            "an update leaves the chunk at its version: the same writer writes it again"
        )
        assert ready_sink.update_metadata([("issues:1#0", {"state": "D"})], version=25).written == ["issues:1#0"]
        assert "issues:1#0" in ready_sink.write([self.chunk("issues:1#0")], version=22).superseded, "the update moved it to 25"
        assert ready_sink.update_metadata([("issues:1#0", {"state": "E"})]).written == ["issues:1#0"]  # unconditional
        assert "issues:1#0" in ready_sink.write([self.chunk("issues:1#0")], version=24).superseded, "and kept version 25"
        ready_sink.delete_chunks(["issues:1#0"], version=30)
        assert not ready_sink.update_metadata([("issues:1#0", {"state": "F"})], version=26).written  # deleted at 30
        assert ready_sink.existing(["issues:1#0"]) == set(), "an update never brings a deleted chunk back"
