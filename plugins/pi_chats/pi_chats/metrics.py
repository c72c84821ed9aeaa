"""pi_chats' own metrics (declared through ``pi_framework.api.metrics``: no-ops unless the process records)."""

from __future__ import annotations

from pi_framework.api import metrics

messages = metrics.counter("pi_chat_messages_total", "Chat messages received by index_chat_message, by outcome.", ["outcome"])


def chat_messages(outcome: str, count: int = 1) -> None:
    """*count* chat messages ended as *outcome* (``indexed``, ``rejected``, ``dropped``, ``parked``, ``unparked``)."""
    messages.inc(count, outcome=outcome)
