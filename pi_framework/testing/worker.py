"""Run a real Celery worker in a subprocess (``WorkerProcess``) and wait on conditions with a deadline (``wait_for``).

Both live in :mod:`pi_framework.worker_process` (``pi demo`` uses them too); this module keeps the testing kit's
import path.
"""

from pi_framework.worker_process import WorkerProcess, wait_for

__all__ = ["WorkerProcess", "wait_for"]
