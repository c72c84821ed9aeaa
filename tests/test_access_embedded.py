"""Issue 11: the embedded sink returns only what Plane lets the searching user read (the shared access contract)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pi_framework.sinks.embedded import EmbeddedSink
from pi_framework.testing.access_matrix import AccessContract


class TestEmbeddedSinkAccess(AccessContract):
    @pytest.fixture
    def sink(self, tmp_path: Path):
        sink = EmbeddedSink(tmp_path / "index.sqlite")
        yield sink
        sink.close()
