"""pi-framework plugin ``pi_cycles``: Plane cycles (sprints) as a workspace source named ``cycles``.

Written against :mod:`pi_framework.api` only, as a third-party plugin would be: it declares the Plane tables it
reads (:mod:`pi_cycles.schema`) and the framework's workspace sync vectorizes and live-syncs it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from pi_cycles.source import CyclesSource
from pi_framework.api import Settings, Source, hookimpl

__all__ = ["CyclesSource"]


@hookimpl
def register_sources(register: Callable[[Source], None], settings: Settings) -> None:
    register(CyclesSource(settings))
