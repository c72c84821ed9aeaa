"""The PI database: schema upgrades, and the circuit breaker against a PostgreSQL that goes away and returns."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from pi_framework.db import Database, DatabaseUnavailable, upgrade_schema
from pi_framework.db.breaker import CLOSED, HALF_OPEN, OPEN
from pi_framework.worker_process import wait_for


class TcpRelay:
    """A port that forwards to PostgreSQL while switched on and refuses connections while off."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._server: socket.socket | None = None

    def on(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port), reuse_port=True)
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()

    def off(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            sink.close()


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
