"""``wait_for`` retries what may still succeed and gives up at once on what never will."""

from __future__ import annotations

import time

import pytest

from pi_framework.worker_process import wait_for


class JobFailed(RuntimeError):
    pass


def test_returns_the_first_truthy_value_and_retries_errors_until_then() -> None:
    calls = iter([ConnectionError("not up yet"), 0, "ready"])

    def condition():
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    assert wait_for(condition, timeout=5, interval=0.01) == "ready"


def test_times_out_naming_the_last_error() -> None:
    def condition():
        raise ConnectionError("refused")

    with pytest.raises(TimeoutError, match="waiting for the broker.*refused"):
        wait_for(condition, timeout=0.2, interval=0.01, message="the broker")


@pytest.mark.parametrize("fatal", [JobFailed, (KeyError, JobFailed), lambda exc: "failed" in str(exc)])
def test_a_fatal_error_is_raised_at_once(fatal) -> None:
    calls = []

    def condition():
        calls.append(1)
        raise JobFailed("vectorization failed")

    started = time.monotonic()
    with pytest.raises(JobFailed):
        wait_for(condition, timeout=30, interval=0.01, fatal=fatal)
    assert len(calls) == 1 and time.monotonic() - started < 1


def test_an_error_that_is_not_fatal_is_still_retried() -> None:
    calls = []

    def condition():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("not yet")
        return True

    assert wait_for(condition, timeout=5, interval=0.01, fatal=JobFailed) is True and len(calls) == 3
