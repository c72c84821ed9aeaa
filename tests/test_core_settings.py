"""Settings: defaults operators rely on, one clear line for a bad value, secrets never shown."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pi_framework.settings import SettingsError, load_settings


def test_documented_defaults(pi_settings):
    s = pi_settings
    assert (s.CELERY_VECTOR_SYNC_ENABLED, s.CELERY_VECTOR_SYNC_INTERVAL, s.CELERY_VECTOR_SYNC_MAX_RETRIES) == (True, 30, 3)
    assert s.CELERY_VECTOR_SYNC_RETRY_DELAY == 30
    assert s.CELERY_DEFAULT_QUEUE == "plane_pi_queue"
    assert s.broker_is_embedded and s.broker_url.startswith("sqla+sqlite:///")
    assert s.database_url.startswith("sqlite:///") and s.sink_names == ["embedded"]
    assert s.PI_VECTORIZED_PLANS == ["PRO", "BUSINESS"] and s.PI_STUCK_JOB_TIMEOUT_MINUTES == 5760


@pytest.mark.parametrize(
    ("value", "expected"),
    [("abc", "expected an integer"), ("-5", "expected a number greater than 0")],
)
def test_bad_value_names_the_variable(monkeypatch, value, expected):
    monkeypatch.setenv("CELERY_VECTOR_SYNC_INTERVAL", value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert str(error.value) == f"CELERY_VECTOR_SYNC_INTERVAL={value!r} is invalid: {expected}"


def test_lists_and_case_insensitive_plans(monkeypatch):
    monkeypatch.setenv("PI_DISABLE_PLUGINS", "a, b,,")
    monkeypatch.setenv("PI_VECTORIZED_PLANS", "pro,Business")
    s = load_settings()
    assert s.PI_DISABLE_PLUGINS == ["a", "b"] and s.PI_VECTORIZED_PLANS == ["PRO", "BUSINESS"]


def test_secrets_are_redacted(monkeypatch):
    monkeypatch.setenv("PI_DATABASE_URL", "postgresql://pi:hunter2@db/pi")
    monkeypatch.setenv("CELERY_BROKER_URL", "pyamqp://guest:hunter2@localhost:5672//")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_hunter2")
    shown = str(load_settings().redacted())
    assert "hunter2" not in shown and "postgresql://pi:***@db/pi" in shown


@pytest.mark.slow
def test_worker_start_up_stops_with_one_line(pi_settings, monkeypatch):
    monkeypatch.setenv("CELERY_VECTOR_SYNC_INTERVAL", "soon")
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "pi_framework.celery_app", "inspect", "ping"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "CELERY_VECTOR_SYNC_INTERVAL='soon' is invalid: expected an integer" in result.stderr
    assert "Traceback" not in result.stderr
