"""Plane comment rows for tests and sample databases: every NOT NULL column set (Django sets no server defaults)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Table

from pi_comments.schema import issue_comments

_TAGS = re.compile(r"<[^>]+>")


class Inserts(Protocol):
    """What writes the row: ``pi_framework.testing.plane.PlaneFactory`` (``plane_db``) or anything alike."""

    def insert(self, table: Table, values: dict[str, Any]) -> dict[str, Any]: ...


def comment(
    plane: Inserts, issue: dict[str, Any], html: str = "<p>Looks good to me.</p>", author: dict[str, Any] | None = None,
    **overrides: Any,
) -> dict[str, Any]:  # fmt: skip
    """Insert a comment by *author* (``None``: the system) on *issue* (a row dict) and return the row as a dict.

    ``comment_stripped`` is what Plane's ``IssueComment.save()`` stores; ``now=`` sets both timestamps.
    """
    now = overrides.pop("now", None) or datetime.now(UTC)
    author_id = author["id"] if author else None
    row = {
        "id": str(uuid.uuid4()),
        "created_at": now,
        "updated_at": now,
        "deleted_at": None,
        "created_by_id": author_id,
        "updated_by_id": None,
        "workspace_id": issue["workspace_id"],
        "project_id": issue["project_id"],
        "issue_id": issue["id"],
        "actor_id": author_id,
        "parent_id": None,
        "description_id": None,
        "comment_stripped": _TAGS.sub("", html).strip(),
        "comment_json": {},
        "comment_html": html,
        "attachments": [],
        "access": "INTERNAL",
        "external_source": None,
        "external_id": None,
        "edited_at": None,
    }
    return plane.insert(issue_comments, {**row, **overrides})
