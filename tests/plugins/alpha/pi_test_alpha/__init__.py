"""Test plugin: a task that appends to a file, a beat entry that fires it every second, and a task that
survives being killed (it completes on redelivery)."""

import os
import time
from pathlib import Path

from pi_framework import hookimpl
from pi_framework.contract.contributions import PeriodicJob


def marker_dir() -> Path:
    path = Path(os.environ["PI_TEST_MARKERS"])
    path.mkdir(parents=True, exist_ok=True)
    return path


def append_marker(name: str) -> str:
    with open(marker_dir() / name, "a") as handle:
        handle.write(f"{os.getpid()}\n")
    return name


def die_once(name: str) -> str:
    """First delivery: record the pid and hang (the test SIGKILLs this process). Redelivery: finish."""
    started = marker_dir() / f"{name}.started"
    if not started.exists():
        started.write_text(str(os.getpid()))
        while True:
            time.sleep(0.1)
    (marker_dir() / f"{name}.done").write_text(str(os.getpid()))
    return name


@hookimpl
def register_tasks(register):
    register(append_marker, name="pi.celery_app.test_alpha_marker")
    register(die_once, name="pi.celery_app.test_alpha_die_once")


@hookimpl
def register_periodic_jobs(register, settings):
    register(PeriodicJob("test-alpha-tick", "pi.celery_app.test_alpha_marker", every=1.0, args=("alpha-beat",)))
