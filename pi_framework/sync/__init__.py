"""The workspace machinery: vectorization, live sync, reconcile, and the jobs and leases that keep them safe.

Any installed plugin whose source has ``scope="workspace"`` is vectorized and kept in sync by these
modules with no code of its own (the Celery tasks that drive them are the built-in plugin
:mod:`pi_framework.default_plugins.workspace_sync`).

=================  ===========================================================================
``jobs``           vectorization jobs: every transition (request, claim, heartbeat, finish, re-queue,
                   retry of failed jobs, cancel, reap)
``leases``         expiring leases with a holder token: one writer per workspace, dead ones replaced fast
``state``          cursors, reconcile stamps, pending-work markers, document retries (``sync_states``)
``compare``        source versus ledger, and the one measure of pending work
``vectorize``      a full (resumable) pass of every source of a workspace; also the bulk re-feed
``live``           applying the changes since the cursors; reconcile of ids
``trigger``        the beat tick: each workspace with pending work goes to exactly one path
``downgrade``      removing a workspace from every sink and the ledger
``dispatch``       task names and sending
=================  ===========================================================================
"""

from __future__ import annotations

from pi_framework import runtime
from pi_framework.contract.contributions import Source
from pi_framework.db import get_database
from pi_framework.sync.jobs import Jobs
from pi_framework.sync.leases import Leases


def current_jobs() -> Jobs:
    """This process's :class:`~pi_framework.sync.jobs.Jobs` (named apart from the ``jobs`` submodule it comes from)."""
    return Jobs(get_database(), runtime.get_registry().settings)


def current_leases() -> Leases:
    """This process's :class:`~pi_framework.sync.leases.Leases`."""
    return Leases(get_database(), runtime.get_registry().settings.PI_LEASE_SECONDS)


def sources() -> list[Source]:
    """Every installed ``scope="workspace"`` source."""
    return runtime.get_registry().workspace_sources()
