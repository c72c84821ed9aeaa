"""The PI database: one engine per process, sessions guarded by a circuit breaker, schema kept up to date.

Celery's prefork pool forks workers after the app is imported, and a SQLAlchemy pool must not
cross a fork, so the engine is created lazily in the process that uses it (``worker_process_init``
resets it) and disposed on ``worker_process_shutdown``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from loguru import logger
from sqlalchemy import Column, Connection, Engine, String, create_engine, event, inspect, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from pi_framework import metrics
from pi_framework.db.breaker import CircuitBreaker, DatabaseUnavailable, is_connection_error
from pi_framework.db.models import Base, PluginTable
from pi_framework.settings import Settings, get_settings, redact_url

__all__ = ["Database", "DatabaseUnavailable", "get_database", "reset_database"]


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 - DBAPI connection
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def with_driver(url: str) -> str:
    """*url* with psycopg2 named for PostgreSQL: SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, not installed."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg2://" + url[len(bare) :]
    return url


def make_engine(url: str, pool_size: int = 5, max_overflow: int = 10) -> Engine:
    """An engine with sane defaults for *url* (SQLite gets WAL and a busy timeout)."""
    url = with_driver(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5} if url.startswith("postgresql") else {},
    )


#: advisory lock key of schema upgrades (any constant; "pi-schema" as an int64)
_SCHEMA_LOCK_KEY = 0x70692D736368656D


def upgrade_schema(engine: Engine) -> None:
    """Create missing tables, add columns that a newer version of a model declares, widen string columns.

    On SQLite, processes starting together (a prefork pool) may race on ``CREATE TABLE`` / ``ADD COLUMN``:
    the loser sees "already exists" / "duplicate column" and simply runs the upgrade again.
    """
    for attempt in range(3):
        try:
            _upgrade_schema(engine)
            return
        except OperationalError as exc:
            lost_race = "already exists" in str(exc) or "duplicate column" in str(exc)
            if engine.dialect.name == "postgresql" or not lost_race or attempt == 2:
                raise


def _upgrade_schema(engine: Engine) -> None:
    """One additive upgrade (see :func:`upgrade_schema`).

    Additive upgrades only (new tables, new nullable columns, longer ``VARCHAR``): enough for a schema that
    only grows, and it needs no migration files or manual SQL. On PostgreSQL the whole upgrade runs in one
    transaction under an advisory lock: worker processes starting together on a fresh database would
    otherwise race on ``CREATE TABLE`` (``pg_type_typname_nsp_index`` unique violations).
    """
    clash = sorted(set(Base.metadata.tables) & set(PluginTable.metadata.tables))
    if clash:  # create_all would skip the plugin's table and the upgrade would alter the core's
        raise RuntimeError(f"a plugin declares a table named like one of the core's: {', '.join(clash)}")
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
        tables = [*Base.metadata.sorted_tables, *PluginTable.metadata.sorted_tables]
        Base.metadata.create_all(connection)
        PluginTable.metadata.create_all(connection)
        inspector = inspect(connection)
        for table in tables:
            present = {column["name"]: column for column in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present:
                    kind = column.type.compile(dialect=engine.dialect)
                    connection.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
                    logger.info("schema: added column {}.{}", table.name, column.name)
                elif _narrower(present[column.name]["type"], column.type):
                    _widen(connection, table.name, column)


def _narrower(found: Any, declared: Any) -> bool:
    """Whether a string column in the database is shorter than the model declares (never the other way round)."""
    if not isinstance(found, String) or not isinstance(declared, String) or found.length is None:
        return False
    return declared.length is None or declared.length > found.length


def _widen(connection: Connection, table: str, column: Column) -> None:
    """``ALTER COLUMN … TYPE`` to the declared length on PostgreSQL (no table rewrite when only the length grows).

    SQLite ignores ``VARCHAR`` lengths (any text fits), so there is nothing to do there.
    """
    if connection.dialect.name != "postgresql":
        return
    kind = column.type.compile(dialect=connection.dialect)
    connection.execute(text(f'ALTER TABLE {table} ALTER COLUMN "{column.name}" TYPE {kind}'))
    logger.info("schema: widened column {}.{} to {}", table, column.name, kind)


class Database:
    """The PI database of this process."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.database_url
        self.settings = settings
        self.breaker = CircuitBreaker(settings.PI_DB_BREAKER_THRESHOLD, settings.PI_DB_BREAKER_COOLDOWN)
        self._engine: Engine | None = None
        self._schema_ready = False

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.url, self.settings.PI_DB_POOL_SIZE, self.settings.PI_DB_MAX_OVERFLOW)
            metrics.watch_pool(self._engine)
        return self._engine

    def ensure_schema(self) -> None:
        if not self._schema_ready:
            self.breaker.call(lambda: upgrade_schema(self.engine))
            self._schema_ready = True

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error; connection errors feed the breaker."""
        self.breaker.before()
        self.ensure_schema()
        session = Session(self.engine, expire_on_commit=False)
        try:
            yield session
            session.commit()
        except Exception as exc:
            try:
                session.rollback()
            except Exception:  # noqa: BLE001 - the connection is gone; the original error matters
                pass
            if is_connection_error(exc):
                self.breaker.record_failure(exc)
                raise DatabaseUnavailable(f"PI database {redact_url(self.url)} unreachable: {self.breaker.last_error}") from exc
            if isinstance(exc, DBAPIError):  # the server answered (a constraint, a lock timeout...): it is reachable
                self.breaker.record_success()
            raise
        else:
            self.breaker.record_success()
        finally:
            session.close()

    def ping(self) -> None:
        """Raise :class:`DatabaseUnavailable` unless a trivial query succeeds."""
        with self.session() as session:
            session.execute(text("SELECT 1"))

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


_database: Database | None = None
_pid: int | None = None


def get_database(settings: Settings | None = None) -> Database:
    """This process's database (re-created after a fork)."""
    global _database, _pid
    if _database is None or _pid != os.getpid():
        _database = Database(settings or get_settings())
        _pid = os.getpid()
    return _database


def reset_database() -> None:
    """Dispose of this process's engine; the next :func:`get_database` builds a new one."""
    global _database
    if _database is not None and _pid == os.getpid():
        _database.dispose()
    _database = None
