"""Run a real Celery worker in a subprocess and wait on conditions with a deadline (never a fixed sleep).

Product code: ``pi demo`` runs its worker this way; the testing kit re-exports it as
:mod:`pi_framework.testing.worker` for tests and plugin authors.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T],
    timeout: float = 60.0,
    interval: float = 0.1,
    message: str = "condition",
    *,
    fatal: type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool] = (),
) -> T:
    """Poll *condition* until it returns something truthy; fail with *message* after *timeout* seconds.

    An exception *condition* raises is retried until the deadline (a service still starting), unless it means the
    wait can never succeed: an instance of *fatal* (an exception type or a tuple of them), or one for which *fatal*
    (a predicate) returns true, is re-raised at once (a failed job, a worker that exited).
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception as exc:  # noqa: BLE001 - retried until the deadline unless fatal
            if _is_fatal(exc, fatal):
                raise
            last_error = exc
        else:
            if value:
                return value
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout}s waiting for {message}" + (f" (last error: {last_error})" if last_error else "")
    )


def _is_fatal(
    exc: BaseException, fatal: type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
) -> bool:
    if isinstance(fatal, type | tuple):
        return isinstance(exc, fatal)
    return bool(fatal(exc))


class WorkerExited(RuntimeError):
    """The worker process ended while something waited on it: waiting longer cannot help."""


class WorkerProcess:
    """``celery -A pi_framework.celery_app worker`` in a subprocess, its log captured to a file."""

    def __init__(
        self, env: Mapping[str, str], log_path: Path, *, beat: bool = False, concurrency: int = 1, pool: str = "prefork"
    ) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, **env}
        queue = env.get("CELERY_DEFAULT_QUEUE", "plane_pi_queue")
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "pi_framework.celery_app",
            "worker",
            "--loglevel=INFO",
            f"--concurrency={concurrency}",
            f"--pool={pool}",
            "-Q",
            queue,
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"pi-test-{os.getpid()}-{time.monotonic_ns()}@%h",
        ]
        if beat:
            argv.append("-B")
        self.process = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self._lock = threading.Lock()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90.0) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise WorkerExited(f"worker exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            return " ready." in self.log()

        wait_for(ready, timeout, message=f"worker ready (log: {self.log_path})", fatal=WorkerExited)

    def child_pids(self) -> list[int]:
        """PIDs of the pool's child processes (where tasks run)."""
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def stop(self, timeout: float = 20.0) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
