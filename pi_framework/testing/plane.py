"""A Plane database for tests: the ``plane_db`` / ``plane_settings`` fixtures.

* ``plane_db`` (pytest fixture): a fresh PostgreSQL database loaded with Plane's reference schema
  (``pi_framework/plane/plane_schema.sql``), as a :class:`PlaneFactory`. ``plane_db.url`` is what
  ``PLANE_DATABASE_URL`` should be set to.
* ``plane_settings``: framework settings with ``PLANE_DATABASE_URL`` pointing at ``plane_db``.
* ``plane_extra_schema``: Plane tables a plugin declares itself, loaded by ``plane_db`` (override it: reference DDL
  or ``MetaData``).

The factories themselves (:class:`PlaneFactory`, :func:`create_sqlite_plane`, :func:`sample_issue`, …) are
product code in :mod:`pi_framework.plane.sample` (``pi demo`` uses them) and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, Table

from pi_framework.db import make_engine
from pi_framework.plane import reset_plane_engine
from pi_framework.plane.sample import (
    PlaneFactory,
    create_sqlite_plane,
    load_schema,
    sample_issue,
    strip_tags,
    utcnow,
)
from pi_framework.runtime import plane_tables
from pi_framework.settings import Settings

__all__ = [
    "PlaneFactory",
    "create_sqlite_plane",
    "load_schema",
    "plane_db",
    "plane_extra_schema",
    "plane_settings",
    "sample_issue",
    "strip_tags",
    "utcnow",
]


@pytest.fixture
def plane_extra_schema() -> list[Path | str | MetaData | Table]:
    """Plane tables the core does not declare, created by ``plane_db`` after Plane's own. The default is the tables every
    installed Plane source declares (``PlaneSource.tables``), created from their Core definitions; a plugin's tests may
    override it with the plugin's reference DDL (a ``.sql`` path or its text)."""
    return list(plane_tables())


@pytest.fixture
def plane_db(postgres_url: str, plane_extra_schema: list[Path | str | MetaData | Table]) -> Iterator[PlaneFactory]:
    """A fresh PostgreSQL database with Plane's real schema (and ``plane_extra_schema``), as a :class:`PlaneFactory`
    (``.url``, ``.engine``)."""
    engine = make_engine(postgres_url, pool_size=2)
    load_schema(engine, plane_extra_schema)
    factory = PlaneFactory(engine, postgres_url)
    yield factory
    reset_plane_engine()
    engine.dispose()


@pytest.fixture
def plane_settings(plane_db: PlaneFactory, pi_env: Any) -> Settings:
    """Framework settings on a throw-away data dir with ``PLANE_DATABASE_URL`` pointing at ``plane_db``."""
    reset_plane_engine()
    return pi_env(PLANE_DATABASE_URL=plane_db.url)
