"""One read-only engine on Plane's database per process (``PLANE_DATABASE_URL``)."""

from __future__ import annotations

import os

from sqlalchemy import Engine

from pi_framework.db import make_engine
from pi_framework.settings import Settings, get_settings


class PlaneDatabaseNotConfigured(RuntimeError):
    """``PLANE_DATABASE_URL`` is unset: the Plane sources have nothing to read."""


_engines: dict[tuple[int, str], Engine] = {}


def plane_engine(settings: Settings | None = None) -> Engine:
    """The engine for ``PLANE_DATABASE_URL``, created in the process that uses it (never across a fork).

    On PostgreSQL every transaction is read-only (``default_transaction_read_only``): pi-framework
    reads Plane's database and must never write it.
    """
    settings = settings or get_settings()
    url = settings.PLANE_DATABASE_URL
    if not url:
        raise PlaneDatabaseNotConfigured("PLANE_DATABASE_URL is not set")
    key = (os.getpid(), url)
    engine = _engines.get(key)
    if engine is None:
        engine = make_engine(url, settings.PI_DB_POOL_SIZE, settings.PI_DB_MAX_OVERFLOW)
        if url.startswith("postgresql"):
            engine = engine.execution_options(postgresql_readonly=True)
        _engines[key] = engine
    return engine


def reset_plane_engine() -> None:
    """Dispose of this process's engines (tests, and after the URL changed)."""
    for (pid, _url), engine in list(_engines.items()):
        if pid == os.getpid():
            engine.dispose()
        del _engines[(pid, _url)]
