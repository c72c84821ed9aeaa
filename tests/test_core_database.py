"""The PI database: schema upgrades, and the circuit breaker against a PostgreSQL that goes away and returns."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from pi_framework.db import Database, DatabaseUnavailable, upgrade_schema
from pi_framework.db.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, describe, is_connection_error
from pi_framework.testing.tcp_relay import TcpRelay
from pi_framework.worker_process import wait_for


def test_schema_is_created_and_upgraded_without_manual_sql(pi_settings, tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = create_engine(url)
    with engine.begin() as connection:  # a database from an older version: the table lacks newer columns
        connection.execute(text("CREATE TABLE workspace_vectorizations (id INTEGER PRIMARY KEY, workspace_id VARCHAR(64))"))
    upgrade_schema(engine)
    columns = {column["name"] for column in inspect(engine).get_columns("workspace_vectorizations")}
    assert {"status", "heartbeat_at", "live_sync_enabled", "progress_done"} <= columns
    assert {"sync_states", "indexed_documents", "indexed_chunks"} <= set(inspect(engine).get_table_names())


def test_breaker_opens_against_a_dead_postgres_and_closes_when_it_returns(pi_env, postgres_url):
    target = make_url(postgres_url)
    relay = TcpRelay((target.host or "127.0.0.1", target.port or 5432))
    settings = pi_env(
        PI_DATABASE_URL=target.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False),
        PI_DB_BREAKER_THRESHOLD=3,
        PI_DB_BREAKER_COOLDOWN=1,
    )
    db = Database(settings)
    for _ in range(3):
        with pytest.raises(DatabaseUnavailable, match="unreachable"):
            db.ping()
    assert db.breaker.state == OPEN

    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="circuit breaker is open"):
        db.ping()
    assert time.monotonic() - started < 0.05, "an open breaker fails fast, without touching the network"

    relay.on()
    try:
        wait_for(lambda: db.breaker.state == HALF_OPEN, 10, interval=0.05, message="breaker half-opens after its cool-down")
        db.ping()
        assert db.breaker.state == CLOSED and db.breaker.failures == 0
    finally:
        relay.off()
        db.dispose()


# ---------------------------------------------------------------------- what counts as a connection failure


def pg_error(sqlstate: str | None, message: str = "ERROR:  something") -> Exception:
    """A psycopg2 error as the server sends it (psycopg2 only sets ``pgcode`` itself for server errors)."""
    import psycopg2

    kind = type("ServerError", (psycopg2.OperationalError,), {"pgcode": sqlstate, "__module__": "psycopg2.errors"})
    return kind(message)


def wrapped(orig: Exception, *, invalidated: bool = False) -> Exception:
    from sqlalchemy.exc import DBAPIError

    return DBAPIError.instance("SELECT 1", {}, orig, type(orig), connection_invalidated=invalidated)


def _connection_errors() -> list:
    import psycopg2

    return [
        pytest.param(
            wrapped(psycopg2.OperationalError('connection to server at "127.0.0.1", port 1 failed: Connection refused')),
            id="refused",
        ),
        pytest.param(wrapped(psycopg2.OperationalError("server closed the connection unexpectedly")), id="server-closed"),
        pytest.param(wrapped(psycopg2.OperationalError("")), id="psycopg2-without-message"),
        pytest.param(wrapped(psycopg2.InterfaceError("connection already closed")), id="already-closed"),
        pytest.param(wrapped(pg_error("08006", "connection failure")), id="08006"),
        pytest.param(wrapped(pg_error("08001")), id="08001"),
        pytest.param(
            wrapped(pg_error("57P01", "terminating connection due to administrator command")), id="57P01-admin-shutdown"
        ),
        pytest.param(wrapped(pg_error("57P02")), id="57P02-crash-shutdown"),
        pytest.param(wrapped(pg_error("57P03", "the database system is starting up")), id="57P03-cannot-connect-now"),
        pytest.param(wrapped(sqlite3.OperationalError("unable to open database file")), id="sqlite-unreachable-file"),
        pytest.param(wrapped(RuntimeError("anything"), invalidated=True), id="connection-invalidated"),
        pytest.param(ConnectionResetError("Connection reset by peer"), id="raw-connection-reset"),
    ]


def _database_errors() -> list:
    import psycopg2

    return [
        pytest.param(wrapped(pg_error("40P01", "deadlock detected")), id="40P01-deadlock"),
        pytest.param(wrapped(pg_error("55P03", "canceling statement due to lock timeout")), id="55P03-lock-timeout"),
        pytest.param(wrapped(pg_error("57014", "canceling statement due to statement timeout")), id="57014-query-canceled"),
        pytest.param(wrapped(pg_error("40001", "could not serialize access")), id="40001-serialization"),
        pytest.param(wrapped(pg_error("53300", "sorry, too many clients already")), id="53300-too-many-connections"),
        pytest.param(wrapped(psycopg2.IntegrityError("duplicate key")), id="integrity"),
        pytest.param(wrapped(sqlite3.OperationalError("database is locked")), id="sqlite-locked"),
        pytest.param(wrapped(sqlite3.OperationalError("")), id="sqlite-without-message"),
        pytest.param(sqlite3.OperationalError("database is locked"), id="raw-sqlite-locked"),
        pytest.param(ValueError("not a database error"), id="value-error"),
    ]


@pytest.mark.parametrize("error", _connection_errors())
def test_connection_failures_count(error):
    assert is_connection_error(error)
    assert describe(error), "a failure always has a description, even without a message"


@pytest.mark.parametrize("error", _database_errors())
def test_errors_of_a_database_that_answered_do_not_count(error):
    assert not is_connection_error(error)
    breaker = CircuitBreaker(threshold=2)
    for _ in range(5):
        with pytest.raises(type(error)):
            breaker.call(lambda: (_ for _ in ()).throw(error))
    assert breaker.state == CLOSED and breaker.failures == 0


def test_a_failure_without_a_message_is_recorded():
    import psycopg2

    breaker = CircuitBreaker(threshold=1)
    breaker.record_failure(wrapped(psycopg2.OperationalError("")))
    breaker.record_failure(wrapped(pg_error(None, "\n\n")))
    breaker.record_failure(psycopg2.OperationalError(""))
    assert breaker.state == OPEN and breaker.last_error == "OperationalError"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


_linger = threading.Event()


def _in_thread(func):
    """Run *func* in a new thread that stays alive until the test ends (a finished thread's id can be reused, and
    the breaker knows its probe by thread id); return *func*'s result or the exception it raised."""
    box: list = []
    done = threading.Event()

    def run() -> None:
        try:
            box.append(func())
        except Exception as exc:  # noqa: BLE001 - handed to the test
            box.append(exc)
        done.set()
        _linger.wait(30)

    threading.Thread(target=run, daemon=True).start()
    done.wait(10)
    return box[0]


@pytest.fixture
def lingering_threads():
    _linger.clear()
    yield
    _linger.set()


def test_half_open_admits_one_probe_at_a_time(lingering_threads):
    clock = Clock()
    breaker = CircuitBreaker(threshold=2, cooldown=10, clock=clock)
    refused = wrapped(pg_error("08001", "could not connect"))
    breaker.record_failure(refused)
    breaker.before()  # one failure: still closed
    breaker.record_failure(refused)
    assert breaker.state == OPEN
    with pytest.raises(DatabaseUnavailable, match="open"):
        breaker.before()

    clock.now += 10
    assert breaker.state == HALF_OPEN
    breaker.before()  # this thread probes
    breaker.before()  # a nested call of the probe (a session creating the schema) belongs to it
    assert isinstance(_in_thread(breaker.before), DatabaseUnavailable), "another caller fails fast during the probe"
    breaker.record_failure(refused)
    assert breaker.state == OPEN, "a failed probe opens the breaker for another cool-down"
    assert isinstance(_in_thread(breaker.before), DatabaseUnavailable)

    clock.now += 10
    assert _in_thread(breaker.before) is None, "after the cool-down another caller may probe"
    assert isinstance(_in_thread(breaker.before), DatabaseUnavailable)
    breaker.record_success()
    assert breaker.state == CLOSED
    assert _in_thread(breaker.before) is None and _in_thread(breaker.before) is None


def test_an_abandoned_probe_is_replaced_after_the_probe_timeout(lingering_threads):
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown=10, clock=clock, probe_timeout=5)
    breaker.record_failure(wrapped(pg_error("08006")))
    clock.now += 10
    assert _in_thread(breaker.before) is None  # the probe's thread dies without a verdict
    assert isinstance(_in_thread(breaker.before), DatabaseUnavailable)
    clock.now += 5
    assert _in_thread(breaker.before) is None


def test_concurrent_callers_of_a_half_open_breaker_send_one_probe():
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown=10, clock=clock)
    breaker.record_failure(wrapped(pg_error("08006")))
    clock.now += 10
    probing, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def probe() -> str:
        calls.append(threading.get_ident())
        probing.set()
        release.wait(10)
        return "ok"

    results: list = []
    threads = [threading.Thread(target=lambda: results.append(_call(breaker, probe))) for _ in range(8)]
    for thread in threads:
        thread.start()
    probing.wait(10)
    wait_for(lambda: len(results) == 7, 10, interval=0.01, message="seven callers turned away")
    release.set()
    for thread in threads:
        thread.join(10)
    assert len(calls) == 1 and results.count("ok") == 1
    assert sum(isinstance(result, DatabaseUnavailable) for result in results) == 7
    assert breaker.state == CLOSED


def _call(breaker: CircuitBreaker, func):
    try:
        return breaker.call(func)
    except DatabaseUnavailable as exc:
        return exc


def test_sqlite_database_is_locked_does_not_open_the_breaker(tmp_path):
    path = tmp_path / "locked.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (v INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})
    breaker = CircuitBreaker(threshold=2)

    def write() -> None:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (1)"))

    try:
        for _ in range(5):
            with pytest.raises(OperationalError, match="database is locked"):
                breaker.call(write)
        assert breaker.state == CLOSED and breaker.failures == 0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        engine.dispose()
    breaker.call(write)


# ---------------------------------------------------------------------- against PostgreSQL


@pytest.fixture
def pg_database(pi_env, postgres_url):
    """The PI database on PostgreSQL with a breaker that opens after two failures, and a two-row table."""
    db = Database(pi_env(PI_DATABASE_URL=postgres_url, PI_DB_BREAKER_THRESHOLD=2, PI_DB_BREAKER_COOLDOWN=60))
    with db.session() as session:
        session.execute(text("CREATE TABLE breaker_rows (id INTEGER PRIMARY KEY, v INTEGER)"))
        session.execute(text("INSERT INTO breaker_rows VALUES (1, 0), (2, 0)"))
    yield db
    db.dispose()


def test_deadlocks_do_not_open_the_breaker(pg_database):
    def transfer(first: int, second: int, barrier: threading.Barrier) -> Exception | None:
        try:
            with pg_database.session() as session:
                session.execute(text("UPDATE breaker_rows SET v = v + 1 WHERE id = :id"), {"id": first})
                barrier.wait(10)
                session.execute(text("UPDATE breaker_rows SET v = v + 1 WHERE id = :id"), {"id": second})
        except Exception as exc:  # noqa: BLE001 - handed to the test
            return exc
        return None

    for _ in range(3):
        barrier = threading.Barrier(2)
        outcomes: list = []
        threads = [
            threading.Thread(target=lambda a=a, b=b, out=outcomes, bar=barrier: out.append(transfer(a, b, bar)))
            for a, b in ((1, 2), (2, 1))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        errors = [outcome for outcome in outcomes if outcome is not None]
        assert len(errors) == 1 and isinstance(errors[0], OperationalError), outcomes
        assert errors[0].orig.pgcode == "40P01", "PostgreSQL broke a real deadlock"
    assert pg_database.breaker.state == CLOSED and pg_database.breaker.failures == 0


def test_lock_and_statement_timeouts_do_not_open_the_breaker(pg_database):
    holder = pg_database.engine.connect()
    holder.execute(text("SELECT * FROM breaker_rows WHERE id = 1 FOR UPDATE"))  # held until rollback
    try:
        for _ in range(3):
            with pytest.raises(OperationalError) as caught, pg_database.session() as session:
                session.execute(text("SET LOCAL lock_timeout = '50ms'"))
                session.execute(text("SELECT * FROM breaker_rows WHERE id = 1 FOR UPDATE"))
            assert caught.value.orig.pgcode == "55P03"
            with pytest.raises(OperationalError) as caught, pg_database.session() as session:
                session.execute(text("SET LOCAL statement_timeout = '50ms'"))
                session.execute(text("SELECT pg_sleep(5)"))
            assert caught.value.orig.pgcode == "57014"
        assert pg_database.breaker.state == CLOSED and pg_database.breaker.failures == 0
    finally:
        holder.rollback()
        holder.close()
    pg_database.ping()


def test_a_closed_port_opens_the_breaker(pi_env, postgres_url):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = make_url(postgres_url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    db = Database(pi_env(PI_DATABASE_URL=url, PI_DB_BREAKER_THRESHOLD=2, PI_DB_BREAKER_COOLDOWN=60))
    for _ in range(2):
        with pytest.raises(DatabaseUnavailable, match="unreachable"):
            db.ping()
    assert db.breaker.state == OPEN
    assert "refused" in db.breaker.last_error.lower()
    db.dispose()
