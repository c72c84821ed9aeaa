"""The plan sync: vectorize exactly the workspaces whose billing plan includes it.

One pass reads every ``(workspace, plan)`` from the ``workspace_plans`` hook, compares it with the
PI database's jobs and runs two operations, each logged with counts:

1. **downgrade** — a workspace with vectorization jobs whose plan left ``PI_VECTORIZED_PLANS`` (or
   that has no plan row, or was soft-deleted): every document removed from every sink and the ledger,
   its cursors dropped, live sync off, active jobs cancelled, and a ``plans`` marker recorded so a
   later upgrade onboards it again. Only that workspace is touched.
2. **onboarding** — a workspace on a vectorized plan with no job (or only a downgraded one): a job is
   queued and dispatched.

Jobs are queued first and dispatched once at the end of the pass, only as many as
``PI_MAX_CONCURRENT_VECTORIZATIONS`` allows; the rest are sent as running jobs finish (and by the
re-dispatch pass). A second pass right after the first finds nothing to do.

Pending work of a vectorized workspace is not the plan sync's business: the live-sync trigger measures it
every interval and takes it either by a live sync or, above ``PI_LIVE_SYNC_MAX_MISSING``, by a bulk re-feed
(one measure, one decision, so no workspace falls between two thresholds). The plans are read in full
before anything changes, so a failing plan source changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from pi_framework.api import (
    Database,
    Jobs,
    Ledger,
    PluginState,
    Settings,
    forget_workspace,
    get_database,
    get_registry,
    workspace_jobs,
)

#: the ``sync_states`` name of the markers a downgrade leaves behind (scope = workspace id), reserved by the plugin
MARKER_SOURCE = "plans"
MARKERS = PluginState.reserved(MARKER_SOURCE)


@dataclass
class JobState:
    """What the PI database knows of one workspace's vectorization."""

    latest_status: str
    live: bool
    active: bool
    #: downgraded by an earlier pass (the ``plans`` marker)
    downgraded: bool
    #: downgraded, yet documents in the ledger: a task was mid-write during the downgrade
    leftovers: bool = False


@dataclass
class Actions:
    """What a pass does: computed first (read only), then applied."""

    downgrade: dict[str, str | None] = field(default_factory=dict)  # workspace -> its plan (None: no plan row)
    onboard: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def read_plans(settings: Settings) -> dict[str, str] | None:
    """``workspace -> upper-cased plan`` from the first plugin that answers ``workspace_plans``; ``None`` if none does."""
    answer: Iterable[tuple[str, str]] | None = get_registry().pm.hook.workspace_plans(settings=settings)
    if answer is None:
        return None
    return {str(workspace_id): (plan or "").strip().upper() for workspace_id, plan in answer}


def job_states(database: Database) -> dict[str, JobState]:
    markers = set(MARKERS.all())
    leftovers = Ledger(database).workspaces_with_documents(markers)
    return {
        jobs.workspace_id: JobState(
            jobs.latest.status,
            jobs.live_sync_enabled,
            jobs.active,
            jobs.workspace_id in markers,
            jobs.workspace_id in leftovers,
        )
        for jobs in workspace_jobs(database=database)
    }


def plan_actions(settings: Settings, plans: dict[str, str], states: dict[str, JobState]) -> Actions:
    """Decide the two operations (read only)."""
    vectorized = {workspace_id for workspace_id, plan in plans.items() if plan in settings.PI_VECTORIZED_PLANS}
    actions = Actions()
    for workspace_id, state in sorted(states.items()):
        if workspace_id in vectorized:
            continue
        if state.live or state.active or not state.downgraded or state.leftovers:
            actions.downgrade[workspace_id] = plans.get(workspace_id)
    for workspace_id in sorted(vectorized):
        state = states.get(workspace_id)
        if state is None or (state.downgraded and not state.active and not state.live):
            actions.onboard.append(workspace_id)
    return actions


def downgrade(database: Database, workspace_id: str, plan: str | None) -> int:
    """Cancel the workspace's active jobs, remove its documents everywhere, leave the marker; returns documents removed.

    Cancelling first makes a running vectorization stop at its next heartbeat; the marker comes last, so a
    downgrade that failed half-way is retried by the next pass.
    """
    Jobs(database, database.settings).cancel(workspace_id, f"cancelled: workspace plan {plan or '(none)'} is not vectorized")
    removed = forget_workspace(workspace_id)
    MARKERS.save(workspace_id, {"plan": plan})
    return removed


def queue_vectorization(jobs: Jobs, workspace_id: str) -> int:
    """Queue a job (not dispatched yet); an onboarded workspace is no longer marked downgraded."""
    job_id = jobs.request(workspace_id, dispatch=False)
    MARKERS.remove(workspace_id)
    return job_id


def apply_actions(jobs: Jobs, actions: Actions) -> dict[str, int]:
    counts = {"downgraded": 0, "documents_removed": 0, "onboarded": 0}
    for workspace_id, plan in actions.downgrade.items():
        try:
            removed = downgrade(jobs.database, workspace_id, plan)
        except Exception as exc:  # noqa: BLE001 - retried by the next pass (the workspace is still a candidate)
            actions.errors[workspace_id] = f"downgrade failed: {type(exc).__name__}: {exc}"
            continue
        counts["downgraded"] += 1
        counts["documents_removed"] += removed
        logger.bind(workspace=workspace_id).info(
            "plan sync: downgrade workspace {} (plan {}): {} document(s) removed, live sync off",
            workspace_id,
            plan or "none",
            removed,
        )
    for workspace_id in actions.onboard:
        try:
            job_id = queue_vectorization(jobs, workspace_id)
        except Exception as exc:  # noqa: BLE001 - retried by the next pass
            actions.errors[workspace_id] = f"queueing a job failed: {type(exc).__name__}: {exc}"
            continue
        counts["onboarded"] += 1
        logger.bind(workspace=workspace_id, job=job_id).info("plan sync: onboarded workspace {}: job {} queued", workspace_id, job_id)
    # only after queueing: a pass that queued nothing sends nothing (jobs waiting for a slot are the re-dispatch pass's)
    counts["dispatched"] = jobs.dispatch_queued() if counts["onboarded"] else 0
    return counts


def preview(settings: Settings | None = None, database: Database | None = None) -> tuple[dict[str, str], Actions] | None:
    """The plans and what a pass would do with them, changing nothing; ``None`` when no plugin answers."""
    settings = settings or get_registry().settings
    plans = read_plans(settings)
    if plans is None:
        return None
    return plans, plan_actions(settings, plans, job_states(database or get_database()))


def sync_plans(settings: Settings | None = None, database: Database | None = None) -> dict[str, Any]:
    """One pass; returns the counts it logged."""
    settings = settings or get_registry().settings
    database = database or get_database()
    planned = preview(settings, database)
    if planned is None:
        logger.warning("plan sync: no plugin answered workspace_plans (PLANE_DATABASE_URL unset?): nothing changed")
        return {"status": "skipped"}
    plans, actions = planned
    counts = apply_actions(Jobs(database, settings), actions)
    for workspace_id, error in actions.errors.items():
        logger.bind(workspace=workspace_id).error("plan sync: workspace {}: {}", workspace_id, error)
    vectorized = sum(plan in settings.PI_VECTORIZED_PLANS for plan in plans.values())
    result = {"status": "success", "workspaces_with_plan": len(plans), "vectorized_plans": vectorized, **counts}
    result["errors"] = len(actions.errors)
    logger.info(
        "plan sync: {} workspace(s) with a plan, {} on {}: downgraded {} ({} documents removed), "
        "onboarded {}, jobs dispatched {}, errors {}",
        len(plans),
        vectorized,
        ",".join(settings.PI_VECTORIZED_PLANS),
        counts["downgraded"],
        counts["documents_removed"],
        counts["onboarded"],
        counts["dispatched"],
        len(actions.errors),
    )
    return result


def workspace_plan_sync() -> dict[str, Any]:
    """Celery task ``pi.celery_app.workspace_plan_sync``."""
    return sync_plans()
