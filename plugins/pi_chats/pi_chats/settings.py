"""The variables of ``pi_chats`` (registered with ``register_settings``; ``pi settings`` shows them)."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from pi_framework.api import PluginSettings, plugin_settings


class ChatsSettings(PluginSettings):
    """Chat indexing: semantic or full-text only, retries, the retry pass."""

    PI_CHATS_SEMANTIC: bool = Field(default=True, description="Embed chat messages (0 = full-text only for chats).")
    PI_CHATS_MAX_RETRIES: int = Field(default=8, ge=0, description="Retries of a chat task (backoff ≤ 10 min); then parked.")
    PI_CHATS_RETRY_INTERVAL: PositiveInt = Field(default=300, description="Seconds between retry_chats passes.")


def chats_settings() -> ChatsSettings:
    """This process's chat settings (built and validated when the plugins were loaded)."""
    return plugin_settings(ChatsSettings)
