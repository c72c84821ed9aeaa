"""Publish every line of an export as ``index_chat_message`` with ``send_task`` (as a chat service would) and time
how long the running workers take until every message is in the ledger: ``python send_export.py EXPORT.jsonl``.

Uses the same environment as the workers (``CELERY_BROKER_URL``, ``CELERY_DEFAULT_QUEUE``, ``PI_DATABASE_URL``).
"""

from __future__ import annotations

import json
import sys
import time

from celery import Celery
from pi_chats import ids
from sqlalchemy import func, select

from pi_framework.db import get_database
from pi_framework.db.models import IndexedDocument
from pi_framework.events import redacted_reprs
from pi_framework.settings import get_settings
from pi_framework.worker_process import wait_for


def indexed_messages() -> int:
    with get_database().session() as session:
        # a message id has three parts after the prefix (workspace, chat, message), a chat's title two
        message_ids = IndexedDocument.document_id.like(f"{ids.PREFIX}%{ids.SEPARATOR}%{ids.SEPARATOR}%")
        query = select(func.count()).where(IndexedDocument.source == "chats", message_ids)
        return session.scalar(query)


def main(path: str) -> None:
    settings = get_settings()
    app = Celery(broker=settings.broker_url)
    before = indexed_messages()
    started = time.monotonic()
    with open(path) as handle:
        sent = 0
        for line in handle:
            payload = json.loads(line)  # as a chat service should: the text stays out of task-sent events
            reprs = redacted_reprs(kwargs=payload, hide=("text", "title"))
            app.send_task("pi.celery_app.index_chat_message", kwargs=payload, queue=settings.CELERY_DEFAULT_QUEUE, **reprs)
            sent += 1
    published = time.monotonic() - started
    wait_for(lambda: indexed_messages() - before >= sent, timeout=3600, interval=0.5, message="every message indexed")
    seconds = time.monotonic() - started
    print(f"{sent} messages published in {published:.1f}s, all indexed after {seconds:.1f}s ({sent / seconds:.0f} messages/s)")


if __name__ == "__main__":
    main(sys.argv[1])
