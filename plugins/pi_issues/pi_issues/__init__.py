"""pi-framework plugin: Plane work items (``issues``), a workspace source.

The framework's own workspace sync (vectorization, live sync, reconcile) drives it; this plugin only
says which issues exist, which are visible and what changed.
"""

from __future__ import annotations

from collections.abc import Callable

from pi_framework.api import Settings, hookimpl
from pi_issues.source import IssuesSource

__all__ = ["IssuesSource"]


@hookimpl
def register_sources(register: Callable[[IssuesSource], None], settings: Settings) -> None:
    register(IssuesSource(settings))
