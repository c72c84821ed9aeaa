"""A circuit breaker around database access.

After ``threshold`` consecutive connection failures the breaker opens: calls fail at once with
:class:`DatabaseUnavailable` instead of each waiting for a TCP timeout. After ``cooldown`` seconds
it half-opens and admits exactly one call, the probe, while every other call keeps failing fast;
the probe's success closes the breaker, its failure opens it again for another cool-down.

Only failures to reach the server count (:func:`is_connection_error`): connection refused, reset or
closed, the server shutting down or not accepting connections yet. A deadlock, a lock or statement
timeout, or SQLite's "database is locked" come from a database that answered: they are the caller's
errors to retry, and never open the breaker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from loguru import logger
from sqlalchemy.exc import DBAPIError

from pi_framework import metrics

T = TypeVar("T")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

#: SQLSTATEs that mean the connection is gone or cannot be made (besides class 08, connection exception):
#: admin_shutdown, crash_shutdown, cannot_connect_now (starting up, shutting down, in recovery)
CONNECTION_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})

#: driver messages of connection failures, for drivers that carry no SQLSTATE (lower case)
CONNECTION_MESSAGES = (
    "connection refused",
    "connection reset",
    "connection timed out",
    "connection already closed",
    "connection is closed",
    "connection was closed",
    "closed the connection",
    "server closed",
    "could not connect",
    "could not translate host name",
    "could not receive data from server",
    "could not send data to server",
    "no connection to the server",
    "terminating connection",
    "timeout expired",
    "no route to host",
    "network is unreachable",
    "broken pipe",
    "gone away",  # MySQL
    "lost connection",  # MySQL
    "unable to open database file",  # SQLite: the file (or its folder) cannot be reached at all
)


class DatabaseUnavailable(RuntimeError):
    """The PI database cannot be reached (or the breaker is open)."""


def _sqlstate(error: BaseException) -> str | None:
    code = getattr(error, "pgcode", None) or getattr(error, "sqlstate", None)
    return code if isinstance(code, str) and code else None


def _is_operational(error: BaseException) -> bool:
    """A DB-API ``OperationalError`` or ``InterfaceError`` (SQLAlchemy's wrapper or any driver's own)."""
    return any(cls.__name__ in ("OperationalError", "InterfaceError") for cls in type(error).__mro__)


def is_connection_error(exc: BaseException) -> bool:
    """Whether *exc* says the database could not be reached (rather than that it answered with an error)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:  # the dialect recognised a disconnect
        return True
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    if isinstance(orig, ConnectionError):  # ConnectionRefusedError, ConnectionResetError, BrokenPipeError...
        return True
    sqlstate = _sqlstate(orig)
    if sqlstate is not None:  # the server answered: only its "you are (being) disconnected" codes count
        return sqlstate.startswith("08") or sqlstate in CONNECTION_SQLSTATES
    if not (_is_operational(exc) or _is_operational(orig)):
        return False
    if type(orig).__module__.startswith("psycopg"):
        # libpq gives every error of a server that answered a SQLSTATE: without one, the connection could
        # not be made or was lost
        return True
    message = str(orig).lower()
    return any(fragment in message for fragment in CONNECTION_MESSAGES)


def describe(exc: BaseException) -> str:
    """The first non-empty line of the driver's message, else the exception's type (never raises)."""
    for candidate in (getattr(exc, "orig", None), exc):
        if candidate is None:
            continue
        try:
            text = str(candidate)
        except Exception:  # noqa: BLE001 - a broken __str__ must not hide the failure
            text = ""
        for line in text.splitlines():
            if line.strip():
                return line.strip()
    return type(getattr(exc, "orig", None) or exc).__name__


class CircuitBreaker:
    def __init__(
        self,
        threshold: int = 5,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        probe_timeout: float | None = None,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        #: a probe that reports nothing this long (its caller died, or failed with an error that is not the
        #: database's) is abandoned, and the next caller probes
        self.probe_timeout = cooldown if probe_timeout is None else probe_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self.failures = 0
        self.opened_at: float | None = None
        self.last_error: str | None = None
        self._probe: tuple[int, float] | None = None  # (thread id, admitted at) of the half-open probe

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return CLOSED
        return HALF_OPEN if self._clock() - self.opened_at >= self.cooldown else OPEN

    def snapshot(self) -> dict[str, object]:
        return {"state": self.state, "consecutive_failures": self.failures, "last_error": self.last_error}

    def before(self) -> None:
        """Raise :class:`DatabaseUnavailable` while the breaker is open, and in half-open unless this call is the probe."""
        with self._lock:
            state = self.state
            if state == CLOSED:
                return
            if state == OPEN:
                raise DatabaseUnavailable(f"database circuit breaker is open after {self.failures} failures: {self.last_error}")
            me, now = threading.get_ident(), self._clock()
            if self._probe is None or self._probe[0] == me or now - self._probe[1] >= self.probe_timeout:
                if self._probe is None:
                    metrics.breaker_state(HALF_OPEN)
                self._probe = (me, now)  # this call probes (a nested call of the probe's thread belongs to it)
                return
            raise DatabaseUnavailable(
                f"database circuit breaker is half-open and another call is probing the database: {self.last_error}"
            )

    def call(self, func: Callable[[], T]) -> T:
        """Run *func*; count connection errors; fail fast while open."""
        self.before()
        try:
            result = func()
        except Exception as exc:
            if is_connection_error(exc):
                self.record_failure(exc)
                raise DatabaseUnavailable(f"database unreachable: {self.last_error}") from exc
            self.record_success()  # the database answered, if only with an error
            raise
        self.record_success()
        return result

    def record_failure(self, exc: BaseException) -> None:
        with self._lock:
            self.failures += 1
            self.last_error = describe(exc)
            if self.failures >= self.threshold and self.state != OPEN:
                self.opened_at = self._clock()
                self._probe = None
                metrics.breaker_state(OPEN)
                logger.error("database circuit breaker opened after {} failures: {}", self.failures, self.last_error)

    def record_success(self) -> None:
        with self._lock:
            if self.opened_at is not None:
                logger.info("database circuit breaker closed")
                metrics.breaker_state(CLOSED)
            self.failures = 0
            self.opened_at = None
            self._probe = None
