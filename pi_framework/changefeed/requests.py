"""What the change feed records in the PI database (``sync_states``) of its own: ``changefeed:status`` and
``changefeed:setup`` (scope: the slot), what ``pi status`` shows.

What it records for the sync machinery — pending-work markers and compare requests, which the live sync consumes —
goes through :mod:`pi_framework.sync.compare_requests` (finding changes feeds the same flags, whoever finds them).

Every name has a ``:``: rows of the sync machinery, never a source's cursor (see :mod:`pi_framework.sync.state`).
"""

from __future__ import annotations

from typing import Any

from pi_framework.db.models import utcnow
from pi_framework.sync import state

STATUS = "changefeed:status"
SETUP = "changefeed:setup"


def save_status(slot: str, **values: Any) -> dict[str, Any]:
    """Merge *values* into the slot's status row (``mode``: ``feed`` or ``polling``, ``reason``, ``lag_bytes`` ...)."""
    current = state.load(STATUS, slot) or {}
    current.update(values, updated_at=utcnow().isoformat())
    state.save(STATUS, slot, current)
    return current


def load_status(slot: str | None = None) -> dict[str, dict[str, Any]]:
    """``slot -> status`` of every slot (or of *slot*)."""
    rows = state.all_of(STATUS)
    return {name: value for name, value in rows.items() if slot in (None, name)}


def metric_families(settings: Any) -> list[Any]:
    """The feed's gauges for the exporter's scrape (:class:`pi_framework.default_plugins.metrics_exporter.StateCollector`), read from the status
    row the feed threads refresh every ``PI_CHANGEFEED_LAG_CHECK_SECONDS``; exposed even while the feed is off."""
    from prometheus_client.core import GaugeMetricFamily

    slot = settings.PI_CHANGEFEED_SLOT
    status = load_status(slot).get(slot) or {}
    lag = GaugeMetricFamily(
        "pi_changefeed_lag_bytes", "WAL the change feed's replication slot holds back on Plane's PostgreSQL.", labels=["slot"]
    )
    lag.add_metric([slot], float(status.get("lag_bytes") or 0))
    streaming = GaugeMetricFamily(
        "pi_changefeed_streaming", "1 while the change feed streams; 0: changes are found by polling only.", labels=["slot"]
    )
    streaming.add_metric([slot], float(status.get("mode") == "feed"))
    limit = GaugeMetricFamily(
        "pi_changefeed_max_lag_bytes",
        "PI_CHANGEFEED_MAX_LAG_BYTES: the slot is dropped beyond it.",
        value=settings.PI_CHANGEFEED_MAX_LAG_BYTES,
    )
    return [lag, streaming, limit]
