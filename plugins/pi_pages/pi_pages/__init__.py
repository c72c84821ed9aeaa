"""pi-framework plugin: Plane pages (``pages``), a workspace source.

Private pages (``access = 1``) are indexed with their owner, so search shows them to that user only.
The framework's own workspace sync drives this source.
"""

from __future__ import annotations

from collections.abc import Callable

from pi_framework.api import Settings, hookimpl
from pi_pages.source import PagesSource

__all__ = ["PagesSource"]


@hookimpl
def register_sources(register: Callable[[PagesSource], None], settings: Settings) -> None:
    register(PagesSource(settings))
