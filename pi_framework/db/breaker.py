"""A circuit breaker around database access.

After ``threshold`` consecutive connection failures the breaker opens: calls fail at once with
:class:`DatabaseUnavailable` instead of each waiting for a TCP timeout. After ``cooldown`` seconds
it half-opens and lets one call through; success closes it, failure opens it again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from loguru import logger
from sqlalchemy.exc import DBAPIError, OperationalError

T = TypeVar("T")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class DatabaseUnavailable(RuntimeError):
    """The PI database cannot be reached (or the breaker is open)."""


def is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


class CircuitBreaker:
    def __init__(self, threshold: int = 5, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self.failures = 0
        self.opened_at: float | None = None
        self.last_error: str | None = None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return CLOSED
        return HALF_OPEN if self._clock() - self.opened_at >= self.cooldown else OPEN

    def snapshot(self) -> dict[str, object]:
        return {"state": self.state, "consecutive_failures": self.failures, "last_error": self.last_error}

    def before(self) -> None:
        """Raise :class:`DatabaseUnavailable` while the breaker is open."""
        if self.state == OPEN:
            raise DatabaseUnavailable(f"database circuit breaker is open after {self.failures} failures: {self.last_error}")

    def call(self, func: Callable[[], T]) -> T:
        """Run *func*; count connection errors; fail fast while open."""
        self.before()
        try:
            result = func()
        except Exception as exc:
            if is_connection_error(exc):
                self.record_failure(exc)
                raise DatabaseUnavailable(f"database unreachable: {self.last_error}") from exc
            raise
        self.record_success()
        return result

    def record_failure(self, exc: BaseException) -> None:
        with self._lock:
            self.failures += 1
            self.last_error = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
            if self.failures >= self.threshold and self.state != OPEN:
                self.opened_at = self._clock()
                logger.error("database circuit breaker opened after {} failures: {}", self.failures, self.last_error)

    def record_success(self) -> None:
        with self._lock:
            if self.opened_at is not None:
                logger.info("database circuit breaker closed")
            self.failures = 0
            self.opened_at = None
