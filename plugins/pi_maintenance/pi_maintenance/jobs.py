"""Job times as ``pi status`` and the ``jobs`` health check print them."""

from __future__ import annotations

from datetime import datetime


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 (the framework hands back aware UTC times), ``None`` for no time."""
    return moment.isoformat() if moment else None
