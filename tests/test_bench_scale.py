"""Smoke test of bench/scale.py: every part runs at toy sizes (``--quick``) and prints its figures.

The figures themselves are not asserted (a shared machine is noisy); what is: the script runs end to end against the
real services, a quiet tick queues nothing (tick counts and the broker queue), statements are equal at both sizes,
a tick after k edits queues exactly k live syncs, edits become searchable, and the index part compares both plans.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "scale.py"


def test_scale_benchmark_quick_mode_runs_every_part(postgres_admin_url, rabbitmq_url, opensearch_url, tmp_path):
    env = {
        **os.environ,
        "PI_BENCH_POSTGRES_URL": postgres_admin_url,
        "PI_BENCH_RABBITMQ_URL": rabbitmq_url,
        "PI_BENCH_OPENSEARCH_URL": opensearch_url,
        "PI_DATA_DIR": str(tmp_path / "pi-data"),
    }
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    out = result.stdout
    assert result.returncode == 0, f"{out}\n{result.stderr[-4000:]}"
    assert "statements equal; broker queue: 0 messages" in out, out
    assert " 0 tasks queued" in out and "1 live syncs queued (1 new messages in the broker queue)" in out, out
    assert "edits: p50" in out and "worker(s), direct:" in out and "worker(s), via beat:" in out, out
    assert "Index Scan using ix_issues_updated_at" in out and "Seq Scan on issues" in out, out
