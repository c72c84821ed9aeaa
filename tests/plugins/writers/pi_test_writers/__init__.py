"""Test plugin: every run that writes a workspace's index (a live sync, a vectorization) is recorded in the PI
database, so a test can prove that no two ever overlapped (tests/test_many_workers.py).

Active only in worker processes started with ``PI_TEST_RECORD_RUNS=1``; the table ``test_writer_runs`` must exist
(:data:`TABLE`, created by the test). Each run is one row ``(workspace_id, kind, holder, pid, started, ended)``,
``started`` written when the run begins and ``ended`` when it returns or raises, both from PostgreSQL's
``clock_timestamp()`` (one clock for every process). The run is the body that executes *inside* the workspace's write
lease (``_LiveSync.run``, ``_Vectorization.run``: the lease is taken before and released after), so the recorded
interval lies within the time the run could write: two recorded intervals of one workspace that overlap are two
writers at once, never an artefact of the recording. A run whose process was SIGKILLed keeps ``ended`` NULL.

``PI_TEST_SLOW_SYNC=<seconds>`` makes every recorded run sleep that long after it started (wider windows: a test
can catch a worker mid-sync, and an overlap is likelier to show). This plugin reaches into pi_framework.sync on
purpose: it is a measuring instrument, not an example of a plugin (those import pi_framework.api only).
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

from pi_framework import hookimpl

TABLE = """
CREATE TABLE IF NOT EXISTS test_writer_runs (
    id           bigserial PRIMARY KEY,
    workspace_id text NOT NULL,
    kind         text NOT NULL,
    holder       text NOT NULL,
    pid          integer NOT NULL,
    started      timestamptz NOT NULL,
    ended        timestamptz
)
"""


def _recorded(run: Any, kind: str) -> Any:
    from sqlalchemy import text

    from pi_framework.db import get_database

    @functools.wraps(run)
    def recording(self: Any, *args: Any, **kwargs: Any) -> Any:
        engine = get_database().engine
        with engine.begin() as connection:
            row_id = connection.execute(
                text(
                    "INSERT INTO test_writer_runs (workspace_id, kind, holder, pid, started) "
                    "VALUES (:workspace, :kind, :holder, :pid, clock_timestamp()) RETURNING id"
                ),
                {"workspace": self.workspace_id, "kind": kind, "holder": self.fence.holder, "pid": os.getpid()},
            ).scalar_one()
        try:
            time.sleep(float(os.environ.get("PI_TEST_SLOW_SYNC") or 0))
            return run(self, *args, **kwargs)
        finally:
            with engine.begin() as connection:
                connection.execute(text("UPDATE test_writer_runs SET ended = clock_timestamp() WHERE id = :id"), {"id": row_id})

    recording.pi_test_recorded = True
    return recording


@hookimpl
def worker_start(settings: Any) -> None:
    if os.environ.get("PI_TEST_RECORD_RUNS") != "1":
        return
    from pi_framework.sync import live, vectorize

    for cls, kind in ((live._LiveSync, "live sync"), (vectorize._Vectorization, "vectorization")):
        if not getattr(cls.run, "pi_test_recorded", False):
            cls.run = _recorded(cls.run, kind)
