"""Benchmark of the plan sync (prints figures; not a test).

    python bench/plan_sync.py --workspaces 2000

Builds a fresh PostgreSQL database with Plane's schema (``PI_TEST_POSTGRES_URL``, default the local
server) holding N workspaces: half on PRO/BUSINESS, a quarter FREE, a quarter without a licence row.
Then times four passes: onboarding, an idempotent pass, a downgrade of every vectorized workspace,
and a final idempotent pass. The PI database is the same PostgreSQL database; no document is
indexed (the figures are the plan sync's own cost: reading plans, comparing, queueing, forgetting).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
import uuid

from sqlalchemy import create_engine, text, update
from sqlalchemy.engine import make_url

from pi_framework import runtime
from pi_framework.db import with_driver
from pi_framework.plane import schema
from pi_framework.plane.sample import PlaneFactory, load_schema


def timed(label: str, func):  # noqa: ANN001, ANN202 - a tiny helper
    started = time.perf_counter()
    result = func()
    print(f"{label:<28} {time.perf_counter() - started:7.2f} s  {result}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspaces", type=int, default=2000)
    args = parser.parse_args()
    admin_url = os.environ.get("PI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"pi_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(with_driver(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        run(url, args.workspaces)
    finally:
        runtime.reset()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def run(url: str, count: int) -> None:
    engine = create_engine(with_driver(url))
    load_schema(engine)
    plane = PlaneFactory(engine, url)
    owner = plane.user()
    plans = ["PRO", "BUSINESS", "FREE", None]
    started = time.perf_counter()
    for n in range(count):
        workspace = plane.workspace(owner)
        if plans[n % 4] is not None:
            plane.workspace_license(workspace, plan=plans[n % 4])
    print(f"Plane: {count} workspaces written in {time.perf_counter() - started:.1f} s")

    os.environ.update(
        PI_DATA_DIR=tempfile.mkdtemp(prefix="pi-bench-"),
        PI_DATABASE_URL=url,
        PLANE_DATABASE_URL=url,
        PI_EMBEDDER="hashing",
        PI_SINKS="embedded",
    )
    os.environ.pop("CELERY_BROKER_URL", None)
    runtime.reset()
    from pi_plans.sync import sync_plans

    timed("pass 1 (onboarding)", sync_plans)
    timed("pass 2 (nothing to do)", sync_plans)
    with engine.begin() as connection:
        connection.execute(update(schema.workspace_licenses).values(plan="FREE"))
    timed("pass 3 (downgrade all)", sync_plans)
    timed("pass 4 (nothing to do)", sync_plans)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    engine.dispose()


if __name__ == "__main__":
    main()
