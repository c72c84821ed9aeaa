"""Health checks of the core: PI database (with its circuit breaker), broker, sinks, embedder, beat, sources."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pi_framework import hookimpl, runtime
from pi_framework.contract.contributions import HealthCheck
from pi_framework.db import get_database
from pi_framework.redaction import redact_url
from pi_framework.sync import isolation


def database() -> dict[str, Any]:
    db = get_database()
    try:
        db.ping()
    except Exception as exc:  # noqa: BLE001 - reported with the breaker state
        return {"ok": False, "url": redact_url(db.url), "error": str(exc), "breaker": db.breaker.snapshot()}
    return {"ok": True, "url": redact_url(db.url), "breaker": db.breaker.snapshot()}


def broker() -> dict[str, Any]:
    from kombu import Connection

    settings = runtime.get_registry().settings
    with Connection(settings.broker_url, connect_timeout=3) as connection:
        connection.ensure_connection(max_retries=1, timeout=3)
    return {"url": redact_url(settings.broker_url), "embedded": settings.broker_is_embedded}


def sinks() -> dict[str, Any]:
    report: dict[str, Any] = {}
    ok = True
    for sink in runtime.get_sinks():
        try:
            report[sink.name] = {"ok": True, **sink.health()}
        except Exception as exc:  # noqa: BLE001
            ok = False
            report[sink.name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": ok, "sinks": report}


def embedder() -> dict[str, Any]:
    model = runtime.get_embedder()
    return {"name": getattr(model, "name", type(model).__name__), "dimension": getattr(model, "dimension", None)}


def sources() -> dict[str, Any]:
    """No installed workspace source raised at run time lately (such a source is skipped while the others sync)."""
    return isolation.check()


def beat() -> dict[str, Any]:
    registry = runtime.get_registry()
    now = datetime.now(UTC)
    entries = {
        job.name: {
            "task": job.task,
            "enabled": job.enabled,
            "every_seconds": job.every,
            "next_run_no_later_than": (now + timedelta(seconds=job.every)).isoformat() if job.enabled else None,
        }
        for job in registry.periodic_jobs.values()
    }
    return {"entries": entries}


@hookimpl
def register_health_checks(register) -> None:  # noqa: ANN001
    for check in (database, broker, sinks, embedder, beat, sources):
        register(HealthCheck(check.__name__, check))
