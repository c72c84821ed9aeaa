"""A writer stalled at its sink write: what a GC pause, a slow sink or ``SIGSTOP`` does to a sync, on demand."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pi_framework.contract.sinks import Sink


@contextmanager
def stalled_at_sink_write(
    sink: Sink, monkeypatch: pytest.MonkeyPatch, run: Callable[[], Any], timeout: float = 60.0
) -> Iterator[dict[str, Any]]:
    """Run *run* in a thread whose ``sink.write`` waits: the block is entered once the thread reached its sink write
    (the caller lets another writer go meanwhile); on leaving it, the write goes on and the thread is joined. The dict
    yielded gets ``"result"`` (what *run* returned) or ``"error"`` (what it raised). Other threads write as usual."""
    arrived, resume, outcome = threading.Event(), threading.Event(), {}
    real_write = sink.write

    def held_write(chunks, version=None):  # noqa: ANN001, ANN202 - the sink's own signature
        if threading.current_thread() is worker:
            arrived.set()
            assert resume.wait(timeout), "the stalled writer was never resumed"
        return real_write(chunks, version=version)

    def target() -> None:
        try:
            outcome["result"] = run()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    monkeypatch.setattr(sink, "write", held_write)
    worker = threading.Thread(target=target)
    worker.start()
    try:
        assert arrived.wait(timeout), f"the writer never reached its sink write: {outcome}"
        yield outcome
    finally:
        resume.set()
        worker.join(timeout)
