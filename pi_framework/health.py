"""Health report: every registered :class:`~pi_framework.contract.contributions.HealthCheck` plus plugin status.

Used in-process by ``pi health`` and by the ``pi.celery_app.health_check`` task, so the two
always agree. Checks never raise out of here: a failing check is reported with its error.
"""

from __future__ import annotations

import time
from typing import Any

from pi_framework.plugins import Registry
from pi_framework.redaction import redact_data, settings_secrets


def run_health_checks(registry: Registry) -> dict[str, Any]:
    """Run every check; ``ok`` is true only when every check passed and no plugin failed.

    The report is redacted (URL passwords, tokens, the settings' secret values): it is printed and returned by a task.
    """
    checks: dict[str, Any] = {}
    for name, check in sorted(registry.health_checks.items()):
        started = time.monotonic()
        try:
            result = dict(check.run())
            result.setdefault("ok", True)
        except Exception as exc:  # noqa: BLE001 - a failing check is a result, not a crash
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        result["seconds"] = round(time.monotonic() - started, 3)
        checks[name] = result
    plugins = {
        "loaded": {name: {"distribution": info.distribution, "version": info.version} for name, info in registry.plugins.items()},
        "failed": dict(registry.failures),
    }
    ok = all(result["ok"] for result in checks.values()) and not registry.failures
    return redact_data({"ok": ok, "checks": checks, "plugins": plugins}, settings_secrets(registry.settings))
