"""The embedded sink (plugin ``embedded``): one SQLite file under ``PI_DATA_DIR``, no server.

Text search is SQLite FTS5 (BM25, porter stemming); vectors are float32 blobs in the same rows,
searched exactly with numpy. For speed the vectors of a workspace (and of global content) are kept
in memory as one matrix per workspace, reloaded only when that workspace's *generation* changed:
every write or delete bumps the generation of the workspaces it touched in the same transaction,
so a search costs one tiny query to check freshness plus a matrix-vector product.

Several worker processes may write at once: WAL journal, a 30 s busy timeout, and every write in a
``BEGIN IMMEDIATE`` transaction (no lock upgrades, hence no deadlocks).
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pi_framework import hookimpl
from pi_framework.contract.documents import Chunk
from pi_framework.contract.sinks import CREATED_BY, Hit, SearchQuery, SinkError, WriteResult
from pi_framework.settings import Settings
from pi_framework.sinks.stop_words import STOP_WORDS

_GLOBAL = ""  # generation key of global content (workspace_id NULL)
_IN_BATCH = 500
_MAX_QUERY_TERMS = 32
#: text candidates ranked without filters before the filters are checked: enough for a few workspaces per file
_CANDIDATES_FACTOR = 10
_MIN_CANDIDATES = 200
#: vector matrices kept in memory (one per recently searched workspace, global content counts as one)
_MAX_CACHED_WORKSPACES = 8
_TERM = re.compile(r"\w+", re.UNICODE)
#: index size (chunks) from which the OR pass of a text query leaves out terms found in half the chunks or more
#: (they have no BM25 weight in FTS5; see ``EmbeddedSink._scoring_terms``): below it ranking every match costs a few ms
COMMON_TERMS_FROM = 10_000
#: BM25 weight of a term found in the document title, relative to one in the chunk text (FTS5 column weights); the
#: same role as ``title^N`` in the OpenSearch sink's multi_match (see ``bench/retrieval.py`` for how it was chosen)
TITLE_WEIGHT = 2.0

#: chunks deleted by a versioned delete, and that version (see :data:`_UPSERT`)
_TOMBSTONES = "CREATE TABLE IF NOT EXISTS tombstones (id TEXT PRIMARY KEY, version INTEGER NOT NULL, deleted_at REAL NOT NULL)"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS generations (workspace TEXT PRIMARY KEY, generation INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    document_id TEXT NOT NULL,
    workspace_id TEXT,
    kind TEXT NOT NULL,
    owner_id TEXT,
    source TEXT NOT NULL,
    title TEXT NOT NULL,
    key TEXT,
    url TEXT,
    text TEXT NOT NULL,
    project_ids TEXT NOT NULL,
    metadata TEXT NOT NULL,
    vector BLOB,
    version INTEGER
);
CREATE INDEX IF NOT EXISTS ix_chunks_workspace ON chunks (workspace_id, kind);
CREATE INDEX IF NOT EXISTS ix_chunks_document ON chunks (document_id);
{_TOMBSTONES};
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5 (
    title, text, content='chunks', content_rowid='rowid', tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, title, text) VALUES (new.rowid, new.title, new.text);
END;
CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, title, text) VALUES ('delete', old.rowid, old.title, old.text);
END;
CREATE TRIGGER IF NOT EXISTS chunks_au AFTER UPDATE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, title, text) VALUES ('delete', old.rowid, old.title, old.text);
    INSERT INTO chunks_fts (rowid, title, text) VALUES (new.rowid, new.title, new.text);
END;
"""

#: a version-guarded upsert: a stored chunk is replaced only by a write of the same or a larger version, and a chunk
#: deleted with a larger version (a tombstone) is not written again; a write without a version (NULL) is unconditional
#: and keeps the stored version. Parameters: the row, then its id and version again for the tombstone check.
_UPSERT = """
INSERT INTO chunks (id, document_id, workspace_id, kind, owner_id, source, title, key, url, text, project_ids, metadata, vector,
    version)
SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
WHERE NOT EXISTS (SELECT 1 FROM tombstones WHERE tombstones.id = ? AND tombstones.version > ?)
ON CONFLICT (id) DO UPDATE SET
    document_id = excluded.document_id, workspace_id = excluded.workspace_id, kind = excluded.kind,
    owner_id = excluded.owner_id, source = excluded.source, title = excluded.title, key = excluded.key,
    url = excluded.url, text = excluded.text, project_ids = excluded.project_ids, metadata = excluded.metadata,
    vector = excluded.vector, version = coalesce(excluded.version, chunks.version)
WHERE excluded.version IS NULL OR chunks.version IS NULL OR excluded.version >= chunks.version
"""
#: the delete guard: a versioned delete never removes a chunk stored with a larger version
_NOT_NEWER = "(? IS NULL OR version IS NULL OR version <= ?)"

#: versioned deletes leave a tombstone this long, refusing older writes of the deleted chunk meanwhile (as OpenSearch's
#: ``index.gc_deletes``, see :data:`pi_framework.sinks.opensearch.queries.GC_DELETES`)
TOMBSTONE_SECONDS = 600

_HIT_COLUMNS = "rowid, id, document_id, kind, title, key, url, text, workspace_id, metadata, project_ids, owner_id"
#: the creator Plane's guest rule compares with, read from the stored metadata
_CREATED_BY_SQL = f"json_extract(metadata, '$.{CREATED_BY}')"
#: a metadata-only update (``update_metadata``): version-guarded like :data:`_UPSERT`, and it keeps text and vector
_UPDATE_METADATA = f"""
UPDATE chunks SET metadata = ?, version = coalesce(?, version) WHERE id = ? AND {_NOT_NEWER} RETURNING workspace_id
"""


def _filter_sql(keys: Sequence[str]) -> str:
    """Whether one of the metadata *keys* holds one of the values of a JSON array parameter (a scalar or a list)."""
    return (
        "("
        + " OR ".join(
            f"EXISTS (SELECT 1 FROM json_each(chunks.metadata, '$.{key}') AS f WHERE CAST(f.value AS TEXT) IN "
            "(SELECT value FROM json_each(?)))"
            for key in keys
        )
        + ")"
    )


def _batches(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), _IN_BATCH):
        yield items[start : start + _IN_BATCH]


def _marks(count: int) -> str:
    return ",".join("?" * count)


def query_terms(text: str) -> list[str]:
    """The words of *text* to search for: lower-cased, de-duplicated, stop words dropped when others remain."""
    terms = list(dict.fromkeys(term.lower() for term in _TERM.findall(text)))
    meaningful = [term for term in terms if term not in STOP_WORDS]
    return (meaningful or terms)[:_MAX_QUERY_TERMS]


def fts_query(terms: Sequence[str], operator: str = "OR") -> str:
    """An FTS5 query of *terms*: every term quoted, so no user input is ever FTS syntax."""
    return f" {operator} ".join(f'"{term}"' for term in terms)


@dataclass
class _Vectors:
    """The vectors of one workspace (or of global content), as of ``generation``."""

    generation: int
    rowids: np.ndarray
    matrix: np.ndarray
    kinds: np.ndarray  # codes into kind_names
    kind_names: list[str]
    owners: np.ndarray  # codes into owner_names; code 0 is "public"
    owner_names: list[str | None]
    creators: np.ndarray  # codes into creator_names; code 0 is "unknown"
    creator_names: list[str | None]
    #: project membership as (row, project) pairs: row ``pair_rows[i]`` is in project ``project_names[pair_projects[i]]``
    pair_rows: np.ndarray
    pair_projects: np.ndarray
    project_names: dict[str, int]
    scoped: np.ndarray  # rows with at least one project
    #: Plane's filter fields, each as (row, value) pairs like the projects: key -> (rows, value codes, value -> code);
    #: loaded on the first search filtering on that key (most searches filter on none), at this same generation
    filter_pairs: dict[str, tuple[np.ndarray, np.ndarray, dict[str, int]]] = field(default_factory=dict)

    def _having(self, key: str, values: Sequence[str]) -> np.ndarray:
        """Rows whose filter field *key* holds one of *values*."""
        rows = np.zeros(len(self.rowids), dtype=bool)
        pair_rows, pair_values, names = self.filter_pairs[key]
        codes = [names[value] for value in values if value in names]
        if codes:
            rows[pair_rows[np.isin(pair_values, codes)]] = True
        return rows

    def _in_projects(self, projects: Sequence[str]) -> np.ndarray:
        """Rows linked to at least one of *projects*."""
        rows = np.zeros(len(self.rowids), dtype=bool)
        codes = [self.project_names[project] for project in projects if project in self.project_names]
        if codes:
            rows[self.pair_rows[np.isin(self.pair_projects, codes)]] = True
        return rows

    def mask(self, query: SearchQuery) -> np.ndarray:
        allowed = self.owners == 0
        if query.user_id is not None and query.user_id in self.owner_names:
            allowed |= self.owners == self.owner_names.index(query.user_id)
        if query.kinds is not None:
            codes = [self.kind_names.index(kind) for kind in query.kinds if kind in self.kind_names]
            allowed &= np.isin(self.kinds, codes)
        if query.projects is not None:
            readable = ~self.scoped | self._in_projects(query.projects)
            if query.guest_projects and query.user_id is not None and query.user_id in self.creator_names:
                own = self.creators == self.creator_names.index(query.user_id)
                readable |= own & self._in_projects(query.guest_projects)
            allowed &= readable
        if query.filters is not None:
            for keys, values in query.filters.clauses():
                passing = np.zeros(len(self.rowids), dtype=bool)
                for key in keys:
                    passing |= self._having(key, values)
                allowed &= passing
        return allowed


class EmbeddedSink:
    name = "embedded"

    def __init__(self, path: Path, generation: str = "") -> None:
        #: the first generation's file; another generation's sits beside it (:meth:`for_generation`)
        self.base_path = Path(path)
        self.generation = generation
        self.path = self.base_path.with_name(f"{self.base_path.stem}.{generation}{self.base_path.suffix}") if generation else self.base_path
        self._lock = threading.RLock()
        self._connection: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._vectors: OrderedDict[str, _Vectors] = OrderedDict()  # least recently searched first
        self._dimension: int | None = None
        self._schema_seen = False

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedSink:
        return cls(settings.data_dir / "embedded_index.sqlite")

    # ------------------------------------------------------------------ connection
    @property
    def connection(self) -> sqlite3.Connection:
        if self._connection is None or self._pid != os.getpid():  # never reuse a connection across a fork
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA busy_timeout=30000")
            connection.execute("PRAGMA synchronous=NORMAL")
            self._connection, self._pid, self._vectors = connection, os.getpid(), OrderedDict()
        return self._connection

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            connection = self.connection
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def _bump(self, connection: sqlite3.Connection, workspaces: set[str | None]) -> None:
        connection.executemany(
            "INSERT INTO generations (workspace, generation) VALUES (?, 1) "
            "ON CONFLICT (workspace) DO UPDATE SET generation = generation + 1",
            [(workspace or _GLOBAL,) for workspace in workspaces],
        )

    def close(self) -> None:
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection, self._vectors = None, OrderedDict()

    # ------------------------------------------------------------------ Sink protocol
    def ensure_ready(self, dimension: int) -> None:
        with self._lock:
            self.connection.executescript(_SCHEMA)  # idempotent (IF NOT EXISTS), safe to race with other processes
        with self._write() as connection:
            columns = {row[1] for row in connection.execute("PRAGMA table_info(chunks)")}
            if "version" not in columns:  # a file written before writes were versioned
                connection.execute("ALTER TABLE chunks ADD COLUMN version INTEGER")
            row = connection.execute("SELECT value FROM meta WHERE key = 'dimension'").fetchone()
            if row is None:
                connection.execute("INSERT INTO meta (key, value) VALUES ('dimension', ?)", (str(dimension),))
            elif int(row[0]) != dimension:
                raise SinkError(
                    f"embedded index {self.path} holds {row[0]}-dimensional vectors but the embedder makes {dimension}: "
                    "delete the file (or use another PI_DATA_DIR) and re-index"
                )
        self._dimension, self._schema_seen = dimension, True

    def _known_dimension(self) -> int:
        if self._dimension is None:
            with self._lock:
                row = self._has_table() and self.connection.execute("SELECT value FROM meta WHERE key = 'dimension'").fetchone()
            if not row:
                raise SinkError(f"embedded index {self.path} is not initialised (ensure_ready was never called)")
            self._dimension = int(row[0])
        return self._dimension

    def write(self, chunks: Sequence[Chunk], version: int | None = None) -> WriteResult:
        result = WriteResult()
        rows = []
        dimension = self._known_dimension()
        for chunk in chunks:
            if chunk.vector is None:  # full-text only
                rows.append(self._row(chunk, None, version))
                continue
            vector = np.asarray(chunk.vector, dtype=np.float32)
            if vector.shape != (dimension,):
                result.failed[chunk.id] = f"vector has shape {vector.shape}, expected ({dimension},)"
            elif not np.isfinite(vector).all():
                result.failed[chunk.id] = "vector contains NaN or infinity"
            elif not vector.any():
                result.failed[chunk.id] = "vector is all zeros (no direction to compare)"
            else:  # stored unit-length: a dot product is then the cosine similarity
                rows.append(self._row(chunk, vector / np.linalg.norm(vector), version))
        if rows:
            with self._write() as connection:
                connection.executemany(_UPSERT, [(*row, row[0], version) for row in rows])
                newer = self._newer(connection, [row[0] for row in rows], version)
                self._bump(connection, {row[2] for row in rows})
            result.superseded.extend(newer)
            result.written = [row[0] for row in rows if row[0] not in newer]
        return result

    @staticmethod
    def _newer(connection: sqlite3.Connection, chunk_ids: list[str], version: int | None) -> dict[str, int]:
        """Of *chunk_ids*, those stored or deleted with a version larger than *version* (the guarded upsert left them)."""
        if version is None:
            return {}
        newer: dict[str, int] = {}
        for batch in _batches(chunk_ids):
            for table in ("tombstones", "chunks"):
                newer.update(
                    connection.execute(
                        f"SELECT id, version FROM {table} WHERE id IN ({_marks(len(batch))}) AND version > ?", [*batch, version]
                    ).fetchall()
                )
        return newer

    @staticmethod
    def _row(chunk: Chunk, vector: np.ndarray | None, version: int | None) -> tuple[Any, ...]:
        return (
            chunk.id,
            chunk.document_id,
            chunk.workspace_id,
            chunk.kind,
            chunk.owner_id,
            chunk.source,
            chunk.title,
            chunk.key,
            chunk.url,
            chunk.text,
            json.dumps(chunk.project_ids),
            json.dumps(chunk.metadata, default=str),
            None if vector is None else vector.tobytes(),
            version,
        )

    def update_metadata(self, updates: Sequence[tuple[str, dict[str, Any]]], version: int | None = None) -> WriteResult:
        """Replace the stored metadata of chunks (text, vector and the rest stay); versioned like :meth:`write`."""
        result = WriteResult()
        if not updates:
            return result
        if not self._has_table():
            result.failed.update((chunk_id, "not in the index") for chunk_id, _ in updates)
            return result
        with self._write() as connection:
            touched: set[str | None] = set()
            for chunk_id, metadata in dict(updates).items():
                rows = connection.execute(
                    _UPDATE_METADATA, (json.dumps(metadata, default=str), version, chunk_id, version, version)
                ).fetchall()
                if rows:
                    touched.add(rows[0][0])
                    result.written.append(chunk_id)
            missing = [chunk_id for chunk_id, _ in dict(updates).items() if chunk_id not in set(result.written)]
            newer = self._newer(connection, missing, version)
            self._bump(connection, touched)
        for chunk_id in missing:
            if chunk_id in newer:
                result.superseded.append(chunk_id)
            else:
                result.failed[chunk_id] = "not in the index"
        return result

    def _delete_where(self, column: str, values: Sequence[str], version: int | None) -> int:
        """Delete the chunks whose *column* is in *values*; a versioned delete leaves tombstones (see :data:`_UPSERT`)."""
        removed = 0
        with self._write() as connection:
            touched: set[str | None] = set()
            gone: list[str] = list(values) if column == "id" else []  # ids: absent ones get a tombstone too
            for batch in _batches(list(values)):
                rows = connection.execute(
                    f"DELETE FROM chunks WHERE {column} IN ({_marks(len(batch))}) AND {_NOT_NEWER} RETURNING workspace_id, id",
                    [*batch, version, version],
                ).fetchall()
                touched.update(row[0] for row in rows)
                removed += len(rows)
                if column != "id":
                    gone.extend(row[1] for row in rows)
            if version is not None:
                self._bury(connection, gone, version)
            self._bump(connection, touched)
        return removed

    @staticmethod
    def _bury(connection: sqlite3.Connection, chunk_ids: list[str], version: int) -> None:
        """Tombstones for *chunk_ids* deleted at *version*; expired ones are dropped."""
        now = time.time()
        connection.execute(_TOMBSTONES)  # a file made before tombstones, by a process that never called ensure_ready
        connection.execute("DELETE FROM tombstones WHERE deleted_at < ?", (now - TOMBSTONE_SECONDS,))
        connection.executemany(
            "INSERT INTO tombstones (id, version, deleted_at) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET version = max(version, excluded.version), deleted_at = excluded.deleted_at",
            [(chunk_id, version, now) for chunk_id in chunk_ids],
        )

    def delete_chunks(self, chunk_ids: Sequence[str], version: int | None = None) -> None:
        if chunk_ids and self._has_table():
            self._delete_where("id", chunk_ids, version)

    def delete_documents(self, document_ids: Sequence[str], version: int | None = None) -> int:
        """Every chunk of these documents (also chunks the ledger never recorded); returns how many."""
        return self._delete_where("document_id", document_ids, version) if document_ids and self._has_table() else 0

    def read_chunks(
        self, *, documents: Sequence[str] | None = None, workspace_id: str | None = None, global_chunks: bool = False
    ) -> Iterator[Chunk]:
        """Stored chunks of *documents*, of *workspace_id* or the global ones, in pages of ``_IN_BATCH`` rows (see the
        Sink protocol)."""
        if (documents is not None) + (workspace_id is not None) + global_chunks != 1:
            raise ValueError("read_chunks needs documents, a workspace_id or global_chunks (exactly one)")
        if not self._has_table():
            return
        if documents is not None:
            for batch in _batches(list(dict.fromkeys(documents))):
                yield from self._read_page(f"document_id IN ({_marks(len(batch))})", list(batch))
            return
        scope, params = ("workspace_id IS NULL", []) if global_chunks else ("workspace_id = ?", [workspace_id])
        last = -1
        while True:
            with self._lock:
                rowids = [
                    row[0]
                    for row in self.connection.execute(
                        f"SELECT rowid FROM chunks WHERE {scope} AND rowid > ? ORDER BY rowid LIMIT ?",
                        (*params, last, _IN_BATCH),
                    )
                ]
            if not rowids:
                return
            yield from self._read_page(f"rowid IN ({_marks(len(rowids))})", rowids)
            last = rowids[-1]

    def _read_page(self, where: str, params: list[Any]) -> list[Chunk]:
        with self._lock:
            rows = self.connection.execute(
                "SELECT id, document_id, workspace_id, kind, owner_id, source, title, key, url, text, project_ids, metadata, "
                f"vector, version FROM chunks WHERE {where} ORDER BY document_id, rowid",
                params,
            ).fetchall()
        return [
            Chunk(
                id=chunk_id_,
                document_id=document_id,
                index=int(chunk_id_.rpartition("#")[2] or 0),
                text=text,
                content_hash="",  # not kept here: the ledger has it
                source=source,
                kind=kind,
                workspace_id=workspace,
                title=title,
                key=key,
                url=url,
                project_ids=json.loads(projects),
                owner_id=owner_id,
                metadata=json.loads(metadata),
                vector=None if vector is None else np.frombuffer(vector, dtype=np.float32).tolist(),
                version=version,
            )
            for chunk_id_, document_id, workspace, kind, owner_id, source, title, key, url, text, projects, metadata, vector, version in rows
        ]

    def for_generation(self, generation: str) -> EmbeddedSink:
        """The same sink on another file beside this one: ``embedded_index.<generation>.sqlite``."""
        return EmbeddedSink(self.base_path, generation)

    def drop(self) -> None:
        """Delete this sink's file (and SQLite's ``-wal``/``-shm`` beside it)."""
        self.close()
        for path in (self.path, self.path.with_name(self.path.name + "-wal"), self.path.with_name(self.path.name + "-shm")):
            path.unlink(missing_ok=True)
        self._dimension, self._schema_seen = None, False

    def delete_workspace(self, workspace_id: str, kind: str | None = None) -> int:
        if not self._has_table():
            return 0
        with self._write() as connection:
            if kind is None:
                removed = connection.execute("DELETE FROM chunks WHERE workspace_id = ?", (workspace_id,)).rowcount
            else:
                removed = connection.execute(
                    "DELETE FROM chunks WHERE workspace_id = ? AND kind = ?", (workspace_id, kind)
                ).rowcount
            self._bump(connection, {workspace_id})
        return removed

    def count(self, workspace_id: str | None = None, kind: str | None = None) -> int:
        if not self._has_table():
            return 0
        clauses, params = [], []
        if workspace_id is not None:
            clauses.append("workspace_id = ?")
            params.append(workspace_id)
        if kind is not None:
            clauses.append("kind = ?")
            params.append(kind)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            return self.connection.execute(f"SELECT count(*) FROM chunks{where}", params).fetchone()[0]

    def existing(self, chunk_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        if not self._has_table():
            return found
        with self._lock:
            for batch in _batches(list(chunk_ids)):
                found.update(
                    row[0] for row in self.connection.execute(f"SELECT id FROM chunks WHERE id IN ({_marks(len(batch))})", batch)
                )
        return found

    def health(self) -> dict[str, Any]:
        try:
            return {"path": str(self.path), "chunks": self.count(), "dimension": self._dimension}
        except sqlite3.Error as exc:
            raise SinkError(f"embedded index {self.path}: {exc}") from exc

    def _has_table(self) -> bool:
        """Whether the schema exists (another process may have created it); remembered once true."""
        if not self._schema_seen:
            with self._lock:
                found = self.connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'chunks'").fetchone()
            self._schema_seen = found is not None
        return self._schema_seen

    # ------------------------------------------------------------------ search
    @staticmethod
    def _hit(row: Sequence[Any], score: float) -> Hit:
        _rowid, chunk_id, document_id, kind, title, key, url, text, workspace_id, metadata, project_ids, owner_id = row
        return Hit(
            chunk_id,
            document_id,
            kind,
            score,
            title,
            key,
            url,
            text,
            workspace_id,
            json.loads(metadata),
            project_ids=json.loads(project_ids),
            owner_id=owner_id,
        )

    @staticmethod
    def _filters(query: SearchQuery) -> tuple[str, list[Any]]:
        """The workspace, privacy and project filter every search applies (global content matches every workspace)."""
        if query.workspace_member:
            sql = "(workspace_id = ? OR workspace_id IS NULL) AND (owner_id IS NULL"
            params: list[Any] = [query.workspace_id]
        else:  # not a member of the workspace: global content only
            sql = "workspace_id IS NULL AND (owner_id IS NULL"
            params = []
        if query.user_id is not None:
            sql += " OR owner_id = ?"
            params.append(query.user_id)
        sql += ")"
        if query.projects is not None:
            # no project, or a project read in full, or a guest's project and the chunk is theirs
            in_projects = (
                "EXISTS (SELECT 1 FROM json_each(chunks.project_ids) AS p WHERE p.value IN (SELECT value FROM json_each(?)))"
            )
            sql += f" AND (json_array_length(project_ids) = 0 OR {in_projects}"
            params.append(json.dumps(sorted(query.projects)))
            if query.guest_projects and query.user_id is not None:
                sql += f" OR ({_CREATED_BY_SQL} = ? AND {in_projects})"
                params.extend([query.user_id, json.dumps(sorted(query.guest_projects))])
            sql += ")"
        if query.kinds is not None:
            sql += f" AND kind IN ({_marks(len(query.kinds))})"
            params.extend(query.kinds)
        if query.filters is not None:
            for keys, values in query.filters.clauses():
                sql += f" AND {_filter_sql(keys)}"
                params.extend([json.dumps(values)] * len(keys))
        return sql, params

    def search_text(self, query: SearchQuery) -> list[Hit]:
        """BM25 over chunks matching every term first; chunks matching only some terms fill the rest."""
        terms = query_terms(query.text)
        if not terms or not query.workspace_id or query.kinds == [] or not self._has_table():
            return []
        ranked: dict[int, float] = {}
        with self._lock:
            for operator in ("AND", "OR") if len(terms) > 1 else ("OR",):
                if len(ranked) >= query.limit:
                    break
                chosen = self._scoring_terms(terms) if operator == "OR" else terms
                for rowid, score in self._ranked(fts_query(chosen, operator), query):
                    if len(ranked) < query.limit:
                        ranked.setdefault(rowid, score)
            rows = self._rows(list(ranked))
        return [self._hit(rows[rowid], score) for rowid, score in ranked.items() if rowid in rows]

    def _scoring_terms(self, terms: list[str]) -> list[str]:
        """The *terms* an OR query ranks by: in an index of :data:`COMMON_TERMS_FROM` chunks or more, those in fewer
        than half the chunks (all *terms* if none is); in a smaller one, all *terms*.

        FTS5's BM25 gives a term in half the chunks or more no weight (its IDF, ``log((N - n + 0.5) / (n + 0.5))``,
        is at most 0 and clamped to 1e-6), so leaving it out changes no chunk's score by more than that: chunks
        matching other terms rank as before, and chunks matching only such terms (all scored about 0, in no useful
        order) are no longer candidates. In a large index those are most of it, and ranking them was most of the
        query's time (``bench/retrieval.py``); in a small one they cost little and may be all there is to show.
        Counting a term's chunks is one pass over its row list, unranked.
        """
        if len(terms) < 2:
            return terms
        total = self.connection.execute("SELECT count(*) FROM chunks").fetchone()[0]
        if total < COMMON_TERMS_FROM:
            return terms
        count = "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?"
        scoring = [
            term
            for term in terms
            if 2 * self.connection.execute(count, [f"{{title text}} : {fts_query([term])}"]).fetchone()[0] < total
        ]
        return scoring or terms

    def _ranked(self, match: str, query: SearchQuery) -> list[tuple[int, float]]:
        """``(rowid, score)`` of the best *query.limit* allowed chunks matching *match*, best first.

        Fast path: rank without filters (FTS5 alone, no row lookups) and keep the allowed ones among the
        first few hundred; exact path, when that leaves too few: the same ranking joined with the filters.
        """
        filters, params = self._filters(query)
        match = f"{{title text}} : ({match})"
        ranking = f"SELECT rowid, bm25(chunks_fts, {TITLE_WEIGHT}, 1.0) AS rank FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?"
        depth = max(query.limit * _CANDIDATES_FACTOR, _MIN_CANDIDATES)
        candidates = self.connection.execute(ranking, [match, depth]).fetchall()
        allowed = {
            row[0]
            for batch in _batches([rowid for rowid, _ in candidates])
            for row in self.connection.execute(
                f"SELECT rowid FROM chunks NOT INDEXED WHERE rowid IN ({_marks(len(batch))}) AND {filters}", [*batch, *params]
            )
        }
        if len(allowed) >= query.limit or len(candidates) < depth:
            return [(rowid, -rank) for rowid, rank in candidates if rowid in allowed][: query.limit]
        exact = (
            f"SELECT f.rowid, bm25(chunks_fts, {TITLE_WEIGHT}, 1.0) AS rank FROM chunks_fts f JOIN chunks ON chunks.rowid = f.rowid "
            f"WHERE chunks_fts MATCH ? AND {filters} ORDER BY rank LIMIT ?"
        )
        return [(rowid, -rank) for rowid, rank in self.connection.execute(exact, [match, *params, query.limit])]

    def _rows(self, rowids: list[int]) -> dict[int, tuple[Any, ...]]:
        if not rowids:
            return {}
        sql = f"SELECT {_HIT_COLUMNS} FROM chunks WHERE rowid IN ({_marks(len(rowids))})"
        return {row[0]: row for row in self.connection.execute(sql, rowids)}

    def search_vector(self, query: SearchQuery) -> list[Hit]:
        if query.vector is None or not query.workspace_id or query.kinds == [] or not self._has_table():
            return []
        vector = np.asarray(query.vector, dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        if not norm or not math.isfinite(norm):
            return []
        vector = vector / norm
        best: list[tuple[float, int]] = []
        with self._lock:
            keys = {key for keys, _ in query.filters.clauses() for key in keys} if query.filters is not None else set()
            for workspace in (query.workspace_id, _GLOBAL) if query.workspace_member else (_GLOBAL,):
                vectors = self._vectors_of(workspace, keys)
                if vectors is None or not len(vectors.rowids):
                    continue
                scores = vectors.matrix @ vector
                scores[~vectors.mask(query)] = -np.inf
                top = min(query.limit, len(scores))
                for index in np.argpartition(-scores, top - 1)[:top]:
                    if np.isfinite(scores[index]):
                        best.append((float(scores[index]), int(vectors.rowids[index])))
            best = sorted(best, reverse=True)[: query.limit]
            rows = self._rows([rowid for _, rowid in best])
        return [self._hit(rows[rowid], score) for score, rowid in best if rowid in rows]

    @staticmethod
    def _scope(workspace: str) -> tuple[str, tuple[str, ...]]:
        """The rows of *workspace*'s vector matrix: ``(where, params)``."""
        where = "workspace_id IS NULL" if workspace == _GLOBAL else "workspace_id = ?"
        return where + " AND vector IS NOT NULL", () if workspace == _GLOBAL else (workspace,)

    def _vectors_of(self, workspace: str, keys: set[str] | None = None) -> _Vectors | None:
        """The cached vectors of *workspace* (``""``: global content), reloaded if its generation moved, with the filter
        pairs of *keys* loaded."""
        for _ in range(3):
            vectors = self._cached_vectors(workspace)
            if vectors is None or all(self._load_filter(workspace, vectors, key) for key in sorted(keys or ())):
                return vectors
            self._vectors.pop(workspace, None)  # written meanwhile: reload at the new generation
        raise SinkError(f"embedded index {self.path}: workspace {workspace!r} keeps changing while a search loads it")

    def _load_filter(self, workspace: str, vectors: _Vectors, key: str) -> bool:
        """Load the (row, value) pairs of filter key *key* into *vectors*, read at its generation (``False``: the
        generation moved, the whole cache must be reloaded). One set-based query over the rows having the key."""
        if key in vectors.filter_pairs:
            return True
        where, params = self._scope(workspace)
        self.connection.execute("BEGIN")
        try:
            row = self.connection.execute("SELECT generation FROM generations WHERE workspace = ?", (workspace,)).fetchone()
            if row is None or row[0] != vectors.generation:
                return False
            found = self.connection.execute(
                f"SELECT chunks.rowid, CAST(f.value AS TEXT) FROM chunks, json_each(chunks.metadata, '$.{key}') AS f "
                f"WHERE {where} AND f.type NOT IN ('object', 'array', 'null')",
                params,
            ).fetchall()
        finally:
            self.connection.execute("COMMIT")
        names: dict[str, int] = {}
        order = np.argsort(vectors.rowids)
        if found:
            rowids = np.fromiter((rowid for rowid, _ in found), dtype=np.int64, count=len(found))
            positions = order[np.searchsorted(vectors.rowids[order], rowids)]
        else:
            positions = np.empty(0, dtype=np.int64)
        codes = np.fromiter((names.setdefault(value, len(names)) for _, value in found), dtype=np.int32, count=len(found))
        vectors.filter_pairs[key] = (positions.astype(np.int64), codes, names)
        return True

    def _cached_vectors(self, workspace: str) -> _Vectors | None:
        row = self.connection.execute("SELECT generation FROM generations WHERE workspace = ?", (workspace,)).fetchone()
        if row is None:
            return None
        cached = self._vectors.get(workspace)
        if cached is not None and cached.generation == row[0]:
            self._vectors.move_to_end(workspace)
            return cached
        # read the generation and the rows in one snapshot, so the cache is never newer than its generation says
        self.connection.execute("BEGIN")
        try:
            generation = self.connection.execute(
                "SELECT generation FROM generations WHERE workspace = ?", (workspace,)
            ).fetchone()[0]
            where, params = self._scope(workspace)
            size = self.connection.execute(f"SELECT count(*) FROM chunks WHERE {where}", params).fetchone()[0]
            dimension = self._known_dimension()
            matrix = np.empty((size, dimension), dtype=np.float32)
            rowids = np.empty(size, dtype=np.int64)
            kinds: list[str] = []
            owners: list[str | None] = []
            creators: list[str | None] = []
            pair_rows: list[int] = []
            pair_projects: list[int] = []
            project_names: dict[str, int] = {}
            cursor = self.connection.execute(
                f"SELECT rowid, kind, owner_id, vector, project_ids, {_CREATED_BY_SQL} FROM chunks WHERE {where}", params
            )
            for index, (rowid, kind, owner, blob, project_ids, creator) in enumerate(cursor):
                rowids[index] = rowid
                matrix[index] = np.frombuffer(blob, dtype=np.float32)
                kinds.append(kind)
                owners.append(owner)
                creators.append(None if creator is None else str(creator))
                for project in json.loads(project_ids):
                    pair_rows.append(index)
                    pair_projects.append(project_names.setdefault(project, len(project_names)))
        finally:
            self.connection.execute("COMMIT")
        kind_names, kind_codes = np.unique(np.array(kinds, dtype=object), return_inverse=True) if kinds else ([], np.empty(0))
        owner_names: list[str | None] = [None, *sorted({owner for owner in owners if owner is not None})]
        owner_index = {name: code for code, name in enumerate(owner_names)}
        creator_names: list[str | None] = [None, *sorted({creator for creator in creators if creator is not None})]
        creator_index = {name: code for code, name in enumerate(creator_names)}
        scoped = np.zeros(size, dtype=bool)
        scoped[np.asarray(pair_rows, dtype=np.int64)] = True
        vectors = _Vectors(
            generation=generation,
            rowids=rowids,
            matrix=matrix,
            kinds=np.asarray(kind_codes, dtype=np.int32),
            kind_names=list(kind_names),
            owners=np.fromiter((owner_index[owner] for owner in owners), dtype=np.int32, count=len(owners)),
            owner_names=owner_names,
            creators=np.fromiter((creator_index[creator] for creator in creators), dtype=np.int32, count=len(creators)),
            creator_names=creator_names,
            pair_rows=np.asarray(pair_rows, dtype=np.int64),
            pair_projects=np.asarray(pair_projects, dtype=np.int32),
            project_names=project_names,
            scoped=scoped,
        )
        self._vectors[workspace] = vectors
        self._vectors.move_to_end(workspace)
        while len(self._vectors) > _MAX_CACHED_WORKSPACES:  # a process searching many workspaces stays bounded
            self._vectors.popitem(last=False)
        return vectors


@hookimpl
def register_sinks(register) -> None:  # noqa: ANN001 - collector from the core
    register("embedded", EmbeddedSink.from_settings)
