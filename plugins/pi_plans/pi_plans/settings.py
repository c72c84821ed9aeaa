"""The variables of ``pi_plans`` (registered with ``register_settings``; ``pi settings`` shows them).

``PI_VECTORIZED_PLANS`` stays the core's: it is the policy the core's ``workspace_plans`` hook answers to (``pi demo``
reads it with no billing plugin installed too).
"""

from __future__ import annotations

from pydantic import Field, PositiveInt

from pi_framework.api import PluginSettings


class PlansSettings(PluginSettings):
    """The plan sync's beat entry."""

    CELERY_WORKSPACE_PLAN_SYNC_ENABLED: bool = Field(default=True, description="Beat entry workspace-plan-sync on/off.")
    CELERY_WORKSPACE_PLAN_SYNC_INTERVAL: PositiveInt = Field(default=86400, description="Seconds between billing-plan syncs.")
