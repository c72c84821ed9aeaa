"""The embedded broker: kombu's SQLAlchemy transport with acknowledgements and a visibility timeout.

kombu's own ``sqla`` transport only hides a fetched message (``visible = 0``) and never deletes it: the
broker file grows without bound, and a message fetched by a worker that is then killed is never seen
again. This transport (URL scheme ``pisqla+sqlite:///…``, used by the Celery app when
``CELERY_BROKER_URL`` is unset) gives it the semantics of Celery's Redis and SQS transports:

* fetching a message *claims* it: ``visible = 0`` plus the claim time and a claim token, in one
  ``UPDATE … RETURNING`` statement (no two consumers can claim the same row);
* ``ack`` (and ``reject`` without requeue) deletes the row;
* ``reject(requeue=True)`` and the restore of unacknowledged messages when a channel closes make the
  row visible again (the same row: no copy is published);
* a claimed message that is not acknowledged within ``visibility_timeout`` seconds becomes visible
  again, so the messages of a worker killed with ``kill -9`` are delivered to the next worker;
* a live connection renews every claim it holds every quarter of the timeout, from a thread of its own
  that runs while it holds any: a task running (or waiting for its ETA, or prefetched) longer than the
  timeout is not delivered twice while its worker process is alive, whatever the pool (prefork,
  threads, or ``solo``, whose polling loop is blocked while it runs a task). So the timeout only bounds
  how long a *dead* worker's messages wait, and can be short (``PI_EMBEDDED_BROKER_VISIBILITY_TIMEOUT``,
  60 s by default). A renewal that fails (a long database lock) is retried a quarter timeout later.

Messages published by plain kombu (``sqla+sqlite:///`` on the same file, e.g. a chat service) are
consumed like any other: the extra columns are nullable and added to an existing table on first use.
Invisible rows without a claim were left behind by kombu's transport (acknowledged long ago, or lost);
they are deleted when the broker is opened.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from json import loads
from queue import Empty
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sqla
from kombu.transport.sqlalchemy.models import metadata
from kombu.utils.encoding import bytes_to_str
from loguru import logger
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker

#: URL scheme of this transport (``pisqla+sqlite:///path``)
SCHEME = "pisqla"
#: seconds a fetched, unacknowledged message stays invisible unless its connection renews the claim
#: (kombu's default when no option is given; pi passes PI_EMBEDDED_BROKER_VISIBILITY_TIMEOUT, 60 s by default)
DEFAULT_VISIBILITY_TIMEOUT = 3600.0
#: a live connection renews its claims this many times per visibility timeout
RENEWALS_PER_TIMEOUT = 4

#: transport options that are kombu's or ours, never keyword arguments of ``create_engine``
_NOT_ENGINE_OPTIONS = frozenset(
    {
        "queue_tablename",
        "message_tablename",
        "callback",
        "errback",
        "max_retries",
        "interval_start",
        "interval_step",
        "interval_max",
        "retry_errors",
        "polling_interval",
        "visibility_timeout",
        "body_encoding",
        "deadletter_queue",
    }
)


def embedded_url(url: str) -> str:
    """*url* (``sqla+…`` or a bare SQLAlchemy URL) as a URL of this transport."""
    for prefix in ("sqla+", "sqlalchemy+"):
        if url.startswith(prefix):
            url = url[len(prefix) :]
    return f"{SCHEME}+{url}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Claims:
    """Messages this connection has fetched and not yet acknowledged: delivery tag -> (row id, claim token).

    Shared by the channels of one transport (kombu may reject a message through another channel than
    the one that fetched it) and safe to use from several threads (acks come from the pool's threads).
    While it holds any claim a daemon thread renews them all every *every* seconds, whatever the thread
    that fetched them is doing (a solo pool runs its tasks on the polling thread); the thread ends when
    nothing is held (the next claim starts another) or the connection closes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[int, str]] = {}
        self._renewer: threading.Thread | None = None
        self._stop = threading.Event()

    def add(self, tag: str, row_id: int, token: str, renew: Callable[[], object], every: float) -> None:
        """Hold a claim; *renew* (which renews every held claim) runs every *every* seconds while any is held."""
        with self._lock:
            self._held[tag] = (row_id, token)
            # not alive: ended, or started in the parent of a forked process (threads do not survive a fork)
            if self._renewer is None or not self._renewer.is_alive():
                self._stop = threading.Event()
                self._renewer = threading.Thread(
                    target=self._renew_while_held, args=(renew, every, self._stop), name="pi-broker-renew", daemon=True
                )
                self._renewer.start()

    def _renew_while_held(self, renew: Callable[[], object], every: float, stop: threading.Event) -> None:
        while not stop.wait(every):
            with self._lock:
                if not self._held:
                    if self._renewer is threading.current_thread():
                        self._renewer = None
                    return
            try:
                renew()
            except Exception as exc:  # noqa: BLE001 - a long lock, a dropped server: the next round tries again
                logger.warning("embedded broker: could not renew claims: {}", exc)

    def pop(self, tag: str) -> tuple[int, str] | None:
        with self._lock:
            return self._held.pop(tag, None)

    def held(self) -> list[tuple[int, str]]:
        with self._lock:
            return list(self._held.values())

    def close(self) -> None:
        """Stop renewing: the connection closed (closing its channels restored what they held)."""
        with self._lock:
            self._stop.set()
            self._renewer = None


class Channel(kombu_sqla.Channel):
    """kombu's SQLAlchemy channel whose messages are claimed, deleted on ack and redelivered after a timeout."""

    #: own engine cache, keyed by (process, URL): a pooled SQLite connection must not cross a fork
    _engines: dict[tuple[int, str], tuple[Engine, sessionmaker]] = {}
    _engines_lock = threading.Lock()

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        options = connection.client.transport_options
        self.visibility_timeout = float(options.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT))
        self.claims: Claims = connection.claims
        self._url = connection.client.hostname
        self._queue_ids: dict[str, int] = {}
        self._no_ack_queues: set[str] = set()
        super().__init__(connection, **kwargs)

    # ------------------------------------------------------------------ engine and schema
    def _engine_from_config(self) -> Engine:
        options = {
            key: value for key, value in self.connection.client.transport_options.items() if key not in _NOT_ENGINE_OPTIONS
        }
        if self._url.startswith("sqlite"):
            options.setdefault("connect_args", {"timeout": 30})
            engine = create_engine(self._url, **options)
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        options.setdefault("pool_pre_ping", True)
        return create_engine(self._url, **options)

    def _open(self) -> tuple[Engine, sessionmaker]:
        key = (os.getpid(), self._url)
        if key not in self._engines:
            with self._engines_lock:
                if key not in self._engines:
                    engine = self._engine_from_config()
                    metadata.create_all(engine)
                    self._upgrade(engine)
                    self._engines[key] = engine, sessionmaker(bind=engine)
        return self._engines[key]

    @property
    def engine(self) -> Engine:
        return self._open()[0]

    def _upgrade(self, engine: Engine) -> None:
        """Add the claim columns to a table kombu created, and drop what kombu's transport left behind."""
        table = self.message_tablename
        for column, kind in (("pi_claim", "VARCHAR(36)"), ("pi_fetched_at", "FLOAT")):
            present = {c["name"] for c in inspect(engine).get_columns(table)}
            if column not in present:
                try:
                    with engine.begin() as connection:
                        connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))
                except OperationalError:  # another process added it first
                    if column not in {c["name"] for c in inspect(engine).get_columns(table)}:
                        raise
        with engine.begin() as connection:
            stale = connection.execute(
                text(f"DELETE FROM {table} WHERE visible = :hidden AND pi_claim IS NULL"), {"hidden": False}
            )
        if stale.rowcount:
            logger.info("embedded broker: deleted {} messages fetched by kombu's transport and never deleted", stale.rowcount)

    # ------------------------------------------------------------------ fetching
    def _queue_id(self, queue: str) -> int:
        if queue not in self._queue_ids:
            self._queue_ids[queue] = self._get_or_create(queue).id
        return self._queue_ids[queue]

    def _claim_sql(self, take: bool) -> str:
        """One statement that claims (or, *take*, deletes) the oldest deliverable message of a queue."""
        table = self.message_tablename
        lock = " FOR UPDATE SKIP LOCKED" if self.engine.dialect.name == "postgresql" else ""
        pick = (
            f"SELECT id FROM {table} WHERE queue_id = :queue_id"
            " AND (visible = :shown OR (visible = :hidden AND pi_fetched_at < :expired))"
            f" ORDER BY id LIMIT 1{lock}"
        )
        if take:
            return f"DELETE FROM {table} WHERE id = ({pick}) RETURNING id, payload"
        return (
            f"UPDATE {table} SET visible = :hidden, pi_claim = :token, pi_fetched_at = :now"
            f" WHERE id = ({pick}) RETURNING id, payload"
        )

    def _fetch(self, queue: str, take: bool = False) -> dict[str, Any]:
        now = time.time()
        token = uuid.uuid4().hex
        parameters = {
            "queue_id": self._queue_id(queue),
            "shown": True,
            "hidden": False,
            "expired": now - self.visibility_timeout,
            "now": now,
            "token": token,
        }
        with self.engine.begin() as connection:
            row = connection.execute(text(self._claim_sql(take)), parameters).first()
        if row is None:
            raise Empty()
        payload = loads(bytes_to_str(row.payload))
        if not take:
            self.claims.add(
                payload["properties"]["delivery_tag"],
                row.id,
                token,
                renew=self.renew_claims,
                every=self.visibility_timeout / RENEWALS_PER_TIMEOUT,
            )
        return payload

    def _get(self, queue: str) -> dict[str, Any]:
        return self._fetch(queue, take=queue in self._no_ack_queues)

    def basic_consume(self, queue: str, no_ack: bool, callback: Any, consumer_tag: str, **kwargs: Any) -> Any:
        if no_ack:  # nobody will acknowledge: a fetched message is deleted at once
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)

    def basic_cancel(self, consumer_tag: str) -> Any:
        queue = self._tag_to_queue.get(consumer_tag)
        self._no_ack_queues.discard(queue)
        return super().basic_cancel(consumer_tag)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        if not no_ack:
            return super().basic_get(queue, no_ack=False, **kwargs)
        try:
            return self.Message(self._fetch(queue, take=True), channel=self)
        except Empty:
            return None

    # ------------------------------------------------------------------ acknowledging
    def _release(self, tag: str, *, delete: bool) -> None:
        claim = self.claims.pop(tag)
        if claim is None:  # acknowledged already, or not fetched through this connection
            return
        row_id, token = claim
        table = self.message_tablename
        with self.engine.begin() as connection:
            if delete:  # acknowledged: gone, whoever holds it now
                connection.execute(text(f"DELETE FROM {table} WHERE id = :id"), {"id": row_id})
            else:  # back in the queue, unless another consumer claimed it after our claim expired
                connection.execute(
                    text(
                        f"UPDATE {table} SET visible = :shown, pi_claim = NULL, pi_fetched_at = NULL WHERE id = :id AND pi_claim = :token"
                    ),
                    {"id": row_id, "token": token, "shown": True},
                )

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple)
        self._release(delivery_tag, delete=True)

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        super().basic_reject(delivery_tag, requeue=requeue)  # requeue: QoS calls _restore_at_beginning
        if not requeue:
            self._release(delivery_tag, delete=True)

    def _restore(self, message: Any) -> None:
        """Make an unacknowledged message visible again (reject with requeue, channel close): the same row, no copy."""
        self._release(message.delivery_tag, delete=False)

    def _restore_at_beginning(self, message: Any) -> None:
        self._restore(message)

    # ------------------------------------------------------------------ renewing
    def renew_claims(self) -> int:
        """Push back the expiry of every message this connection holds; the number of rows renewed.

        Called by the claims' renewal thread; a row whose claim another consumer took over is left alone.
        """
        held = self.claims.held()
        if not held:
            return 0
        now = time.time()
        with self.engine.begin() as connection:
            result = connection.execute(
                text(f"UPDATE {self.message_tablename} SET pi_fetched_at = :now WHERE id = :id AND pi_claim = :token"),
                [{"now": now, "id": row_id, "token": token} for row_id, token in held],
            )
        return result.rowcount


class Transport(kombu_sqla.Transport):
    """kombu's SQLAlchemy transport with :class:`Channel`: ack deletes, unacknowledged messages come back."""

    Channel = Channel

    def __init__(self, client: Any, **kwargs: Any) -> None:
        self.claims = Claims()
        super().__init__(client, **kwargs)

    def close_connection(self, connection: Any) -> None:
        try:
            super().close_connection(connection)  # closing the channels restores their unacknowledged messages
        finally:
            self.claims.close()


TRANSPORT_ALIASES[SCHEME] = "pi_framework.broker:Transport"
