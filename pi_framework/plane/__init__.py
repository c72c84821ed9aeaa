"""Read access to Plane's own database: its tables as SQLAlchemy Core objects and one engine per process.

Plane's database is read, never written. The tables mirror ``plane_schema.sql`` (Plane's real
migrations) and use types that work on PostgreSQL (production) and SQLite (the one-machine demo).
"""

from pi_framework.plane.db import plane_engine, reset_plane_engine
from pi_framework.plane.schema import SCHEMA_SQL, metadata

__all__ = ["SCHEMA_SQL", "metadata", "plane_engine", "reset_plane_engine"]
