"""Write a synthetic chat export for ``pi chats-backfill``: ``python make_export.py OUT.jsonl CHATS MESSAGES_PER_CHAT``.

Messages are about 40 words, alternate user/assistant, and are written in shuffled order (as an
export taken from several shards could be), so titles still have to be picked by ``created_at``.
"""

from __future__ import annotations

import json
import random
import sys
from datetime import UTC, datetime, timedelta

WORDS = (
    "release checklist deploy rollback database migration replica backup schedule sprint planning estimate "
    "customer invoice billing renewal onboarding laptop vpn password incident postmortem alert latency cache "
    "query index search embedding model budget hiring interview roadmap milestone design review feedback"
).split()


def main(path: str, chats: int, per_chat: int) -> None:
    rng = random.Random(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    lines = []
    for chat in range(chats):
        for number in range(per_chat):
            lines.append(
                {
                    "workspace_id": f"ws-{chat % 3}",
                    "chat_id": f"chat-{chat}",
                    "message_id": f"msg-{chat}-{number}",
                    "user_id": f"user-{chat % 7}",
                    "role": "user" if number % 2 == 0 else "assistant",
                    "text": " ".join(rng.choice(WORDS) for _ in range(40)),
                    "created_at": (start + timedelta(hours=chat, minutes=number)).isoformat(),
                }
            )
    rng.shuffle(lines)
    with open(path, "w") as handle:
        handle.writelines(json.dumps(line) + "\n" for line in lines)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
