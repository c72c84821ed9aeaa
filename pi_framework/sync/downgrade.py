"""Removing a workspace from the index (its plan left vectorization)."""

from __future__ import annotations

import uuid

from pi_framework.pipeline.indexer import Indexer
from pi_framework.sync import current_jobs, current_leases, sources, state
from pi_framework.sync.leases import queued_marker, workspace_lease


def forget_workspace(workspace_id: str) -> int:
    """Remove a workspace from every sink and the ledger, drop its cursors, switch its live sync off.

    Live sync goes off first, so no new sync starts; then the write lease is seized with a new fencing token, so a
    sync or vectorization still in flight can write nothing more: its next write-ahead or ledger commit fails, and
    what it wrote meanwhile it deletes again (see :mod:`pi_framework.pipeline.indexer`). Returns the documents removed.
    """
    current_jobs().disable_live_sync(workspace_id)
    lease = current_leases()
    lease.clear(queued_marker(workspace_id))
    fence = lease.seize(workspace_lease(workspace_id), f"downgrade:{uuid.uuid4()}")
    try:
        removed = Indexer(fence=fence).delete_workspace(workspace_id)
        state.forget(workspace_id, [source.name for source in sources()])
    finally:
        lease.release(fence.name, fence.holder)
    return removed
