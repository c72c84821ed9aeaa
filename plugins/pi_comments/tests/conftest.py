"""pi_comments' tests: the plugin's own reference DDL loaded into ``plane_db``, the source, a comment factory."""

from __future__ import annotations

from functools import partial

import pytest
from pi_comments.sample import comment
from pi_comments.schema import SCHEMA_SQL, issue_comments
from pi_comments.source import CommentsSource


@pytest.fixture
def plane_extra_schema(plane_extra_schema):
    """``plane_db`` creates ``issue_comments`` from the plugin's reference DDL (the core's schema has none), and keeps
    the tables the other installed Plane sources declare (a vectorization runs every installed source)."""
    others = [tables for tables in plane_extra_schema if getattr(tables, "name", None) != issue_comments.name]
    return [SCHEMA_SQL, *others]


@pytest.fixture
def source(plane_settings) -> CommentsSource:
    return CommentsSource(plane_settings)


@pytest.fixture
def add_comment(plane_db):
    """``add_comment(issue, html, author, **overrides)``: a comment row on ``plane_db`` (see :func:`pi_comments.sample.comment`)."""
    return partial(comment, plane_db)
