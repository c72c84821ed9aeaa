"""What one user may read in one workspace, resolved from Plane's database at query time.

Plane's rules (``plane/app/permissions``, the work-item and page views, the global search), as search applies them:

* a user reads anything of a workspace only as an **active workspace member** (``workspace_members``: ``is_active``,
  ``deleted_at IS NULL``; the workspace not deleted, the user account active);
* project-scoped content (work items, project pages) only of projects where they are an **active project member**
  (``project_members``: ``is_active``, ``deleted_at IS NULL``; the project neither deleted nor archived). Secret
  projects (``network = 0``) need nothing more: nobody outside their members even sees them listed, and a public
  project that the user has not joined is not readable either;
* a **guest** (project role 5) of a project without ``guest_view_all_features`` reads only what they created there
  (work items they created, pages they own) — Plane's ``role > 5 OR guest_view_all_features OR created_by = user``.

Nothing is cached beyond ``PI_ACCESS_CACHE_TTL`` seconds, so joining or leaving a project takes effect on the next query
after at most that long, with no re-indexing: the index holds each chunk's ``project_ids`` and creator, and
this module says which of them a user may match.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

from loguru import logger
from sqlalchemy import and_, select
from sqlalchemy.exc import SQLAlchemyError

from pi_framework.plane.db import plane_engine
from pi_framework.plane.schema import project_members, projects, users, workspace_members, workspaces
from pi_framework.settings import Settings, get_settings

#: Plane's project roles: 20 admin, 15 member, 5 guest
GUEST = 5
_MAX_CACHED = 4096


class AccessUnavailable(RuntimeError):
    """Plane's database could not be read, so what the user may see is unknown (search refuses rather than guess)."""


@dataclass(frozen=True)
class Access:
    """One user's read access to one workspace.

    ``workspace_member`` False: nothing of the workspace is readable (global content still is).
    ``projects``: projects whose content the user reads in full. ``guest_projects``: projects where the user reads
    only what they created. ``verified`` False: Plane is not configured, membership could not be checked.
    """

    workspace_member: bool
    projects: frozenset[str] = frozenset()
    guest_projects: frozenset[str] = frozenset()
    verified: bool = True


NO_ACCESS = Access(workspace_member=False)

_cache: dict[tuple[str, str, str], tuple[float, Access]] = {}
_lock = threading.Lock()
_warned_unconfigured = False


def _as_uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        return None


def read_access(workspace_id: str, user_id: str, settings: Settings | None = None) -> Access:
    """Ask Plane now (no cache). Ids that are not UUIDs are no Plane user or workspace: no access."""
    settings = settings or get_settings()
    workspace, user = _as_uuid(workspace_id), _as_uuid(user_id)
    if workspace is None or user is None:
        return NO_ACCESS
    member = (
        select(workspace_members.c.id)
        .join(workspaces, workspaces.c.id == workspace_members.c.workspace_id)
        .join(users, users.c.id == workspace_members.c.member_id)
        .where(
            workspace_members.c.workspace_id == workspace,
            workspace_members.c.member_id == user,
            workspace_members.c.is_active.is_(True),
            workspace_members.c.deleted_at.is_(None),
            workspaces.c.deleted_at.is_(None),
            users.c.is_active.is_(True),
        )
        .limit(1)
    )
    memberships = (
        select(project_members.c.project_id, project_members.c.role, projects.c.guest_view_all_features)
        .join(
            projects,
            and_(projects.c.id == project_members.c.project_id, projects.c.workspace_id == project_members.c.workspace_id),
        )
        .where(
            project_members.c.workspace_id == workspace,
            project_members.c.member_id == user,
            project_members.c.is_active.is_(True),
            project_members.c.deleted_at.is_(None),
            projects.c.deleted_at.is_(None),
            projects.c.archived_at.is_(None),
        )
    )
    try:
        with plane_engine(settings).connect() as connection:
            if connection.execute(member).first() is None:
                return NO_ACCESS
            rows = connection.execute(memberships).all()
    except SQLAlchemyError as exc:
        raise AccessUnavailable(f"cannot read project membership from Plane: {type(exc).__name__}") from exc
    full = {str(row.project_id) for row in rows if row.role > GUEST or row.guest_view_all_features}
    guest = {str(row.project_id) for row in rows} - full
    return Access(workspace_member=True, projects=frozenset(full), guest_projects=frozenset(guest))


def resolve_access(workspace_id: str, user_id: str, settings: Settings | None = None) -> Access:
    """The user's access to the workspace, from Plane, reused for ``PI_ACCESS_CACHE_TTL`` seconds.

    Without ``PLANE_DATABASE_URL`` there is no Plane content to protect and nobody to ask: the user keeps the
    workspace's content that is not project-scoped (``verified=False``, warned once per process) and no project.
    """
    global _warned_unconfigured
    settings = settings or get_settings()
    url = settings.PLANE_DATABASE_URL
    if not url:
        if not _warned_unconfigured:
            logger.warning("search: PLANE_DATABASE_URL is not set; project-scoped content is never returned to a user")
            _warned_unconfigured = True
        return Access(workspace_member=True, verified=False)
    ttl = settings.PI_ACCESS_CACHE_TTL
    key = (url, workspace_id, user_id)
    now = time.monotonic()
    if ttl > 0:
        with _lock:
            cached = _cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
    access = read_access(workspace_id, user_id, settings)
    if ttl > 0:
        with _lock:
            if len(_cache) >= _MAX_CACHED:
                for stale in [k for k, (expires, _) in _cache.items() if expires <= now] or list(_cache)[: _MAX_CACHED // 4]:
                    del _cache[stale]
            _cache[key] = (now + ttl, access)
    return access


def clear_access_cache() -> None:
    """Forget every cached access (tests; after a bulk membership change)."""
    with _lock:
        _cache.clear()
