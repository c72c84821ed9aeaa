"""pi-framework plugin ``pi_comments``: Plane work-item comments as a workspace source named ``comments``.

Written against :mod:`pi_framework.api` only, as a third-party plugin would be: it declares the Plane table it reads
(:mod:`pi_comments.schema`) and the framework's workspace sync vectorizes, live-syncs and reconciles it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from pi_comments.source import CommentsSource
from pi_framework.api import Settings, Source, hookimpl

__all__ = ["CommentsSource"]


@hookimpl
def register_sources(register: Callable[[Source], None], settings: Settings) -> None:
    register(CommentsSource(settings))
