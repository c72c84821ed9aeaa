"""Removing a workspace from the index (its plan left vectorization)."""

from __future__ import annotations

from pi_framework.pipeline.indexer import Indexer
from pi_framework.sync import jobs, leases, sources, state
from pi_framework.sync.leases import queued_marker, workspace_lease


def forget_workspace(workspace_id: str) -> int:
    """Remove a workspace from every sink and the ledger, drop its cursors, switch its live sync off.

    Live sync goes off first, so no new sync starts; the write lease is cleared, so a sync still running
    loses it at its next renewal and stops without moving a cursor. Returns the documents removed.
    """
    jobs().disable_live_sync(workspace_id)
    for name in (workspace_lease(workspace_id), queued_marker(workspace_id)):
        leases().clear(name)
    removed = Indexer().delete_workspace(workspace_id)
    state.forget(workspace_id, [source.name for source in sources()])
    return removed
