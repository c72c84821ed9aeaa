"""A parser of PostgreSQL's ``pgoutput`` logical replication messages, protocol version 1.

Only what the change feed needs: Begin, Commit, Relation, Insert, Update, Delete, Truncate (Origin, Type and
logical decoding Message are recognised and skipped). Column values arrive as text (``pgoutput`` without the
``binary`` option); a value ``None`` is SQL ``NULL``, and a TOASTed value the update left unchanged is
:data:`UNCHANGED`. Reference: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

#: a TOASTed column an UPDATE did not change (its value is not sent)
UNCHANGED = object()
#: PostgreSQL timestamps count microseconds from this instant
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class ProtocolError(ValueError):
    """A message this parser does not understand."""


@dataclass(frozen=True)
class Column:
    name: str
    key: bool
    type_oid: int


@dataclass(frozen=True)
class Relation:
    oid: int
    namespace: str
    name: str
    #: ``d`` default (primary key), ``n`` nothing, ``f`` full, ``i`` index
    replica_identity: str
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class Begin:
    final_lsn: int
    commit_time: datetime
    xid: int


@dataclass(frozen=True)
class Commit:
    commit_lsn: int
    end_lsn: int
    commit_time: datetime


@dataclass(frozen=True)
class Change:
    """An INSERT, UPDATE or DELETE of one row: ``row`` maps column names to text values (``None`` = NULL).

    A DELETE (and an UPDATE's ``old``) carries only the replica identity's columns unless the table's replica
    identity is ``FULL``: ``key_only`` says so."""

    op: str  # "insert" | "update" | "delete"
    relation: int
    row: dict[str, Any]
    old: dict[str, Any] | None = None
    key_only: bool = False


@dataclass(frozen=True)
class Truncate:
    relations: tuple[int, ...]
    cascade: bool
    restart_identity: bool


@dataclass(frozen=True)
class Skipped:
    """A message the feed has no use for (Origin, Type, logical decoding Message)."""

    kind: str


Message = Relation | Begin | Commit | Change | Truncate | Skipped


def pg_time(microseconds: int) -> datetime:
    return PG_EPOCH + timedelta(microseconds=microseconds)


def lsn_text(lsn: int) -> str:
    """``0/16B3748``: how PostgreSQL writes an LSN."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass
class _Reader:
    data: bytes
    at: int = 0

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.at + size > len(self.data):
            raise ProtocolError(f"message ends early ({len(self.data)} bytes)")
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += size
        return value

    def byte(self) -> str:
        return chr(self.take("!B"))

    def string(self) -> str:
        end = self.data.index(b"\0", self.at)
        value = self.data[self.at : end].decode()
        self.at = end + 1
        return value

    def raw(self, size: int) -> bytes:
        if self.at + size > len(self.data):
            raise ProtocolError(f"message ends early ({len(self.data)} bytes)")
        value = self.data[self.at : self.at + size]
        self.at += size
        return value


@dataclass
class Decoder:
    """Parses a stream of messages, remembering the Relation messages (sent before a table's first change on a
    connection, and again when its definition changes) to name the columns of every row."""

    relations: dict[int, Relation] = field(default_factory=dict)

    def parse(self, payload: bytes) -> Message:
        reader = _Reader(bytes(payload))
        kind = reader.byte()
        if kind == "B":
            return Begin(reader.take("!Q"), pg_time(reader.take("!q")), reader.take("!I"))
        if kind == "C":
            reader.take("!B")  # flags (unused)
            return Commit(reader.take("!Q"), reader.take("!Q"), pg_time(reader.take("!q")))
        if kind == "R":
            relation = self._relation(reader)
            self.relations[relation.oid] = relation
            return relation
        if kind == "I":
            oid = reader.take("!I")
            if reader.byte() != "N":
                raise ProtocolError("INSERT without a new tuple")
            return Change("insert", oid, self._tuple(reader, oid))
        if kind == "U":
            oid = reader.take("!I")
            marker, old = reader.byte(), None
            key_only = False
            if marker in ("K", "O"):
                old, key_only = self._tuple(reader, oid), marker == "K"
                marker = reader.byte()
            if marker != "N":
                raise ProtocolError(f"UPDATE with tuple marker {marker!r}")
            return Change("update", oid, self._tuple(reader, oid), old, key_only)
        if kind == "D":
            oid = reader.take("!I")
            marker = reader.byte()
            if marker not in ("K", "O"):
                raise ProtocolError(f"DELETE with tuple marker {marker!r}")
            return Change("delete", oid, self._tuple(reader, oid), key_only=marker == "K")
        if kind == "T":
            count = reader.take("!I")
            options = reader.take("!B")
            return Truncate(tuple(reader.take("!I") for _ in range(count)), bool(options & 1), bool(options & 2))
        if kind in ("O", "Y", "M"):
            return Skipped(kind)
        raise ProtocolError(f"unknown pgoutput message {kind!r}")

    @staticmethod
    def _relation(reader: _Reader) -> Relation:
        oid, namespace, name = reader.take("!I"), reader.string(), reader.string()
        identity = reader.byte()
        columns = []
        for _ in range(reader.take("!H")):
            flags, column = reader.take("!B"), reader.string()
            type_oid = reader.take("!I")
            reader.take("!i")  # type modifier
            columns.append(Column(column, bool(flags & 1), type_oid))
        return Relation(oid, namespace, name, identity, tuple(columns))

    def _tuple(self, reader: _Reader, oid: int) -> dict[str, Any]:
        relation = self.relations.get(oid)
        if relation is None:
            raise ProtocolError(f"row of relation {oid} before its Relation message")
        values: dict[str, Any] = {}
        for index in range(reader.take("!H")):
            name = relation.columns[index].name if index < len(relation.columns) else f"#{index}"
            kind = reader.byte()
            if kind == "n":
                values[name] = None
            elif kind == "u":
                values[name] = UNCHANGED
            elif kind in ("t", "b"):
                raw = reader.raw(reader.take("!I"))
                values[name] = raw.decode() if kind == "t" else raw
            else:
                raise ProtocolError(f"unknown column kind {kind!r}")
        return values
