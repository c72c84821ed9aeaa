"""``pi demo``: the whole product on one machine, with no service to install.

It builds a Plane-shaped SQLite database (Plane's real tables, a few workspaces with projects,
issues, pages and billing plans), starts a real Celery worker with beat on the embedded broker,
vectorizes the workspaces on a vectorized plan, edits and deletes content in "Plane" while live sync
follows, and prints hybrid search results with timings.

A built-in plugin of its own (entry point ``demo``): it only adds the ``pi demo`` command. It uses the core
(workspace sync, the ``workspace_plans`` hook, ``PI_VECTORIZED_PLANS``), never another plugin by name, and
nothing from the testing kit (``pi demo`` works without the ``test`` extra).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable
from typing import Any

import click

from pi_framework import hookimpl, runtime
from pi_framework.db import get_database
from pi_framework.db.models import JobStatus
from pi_framework.plane import schema
from pi_framework.plane.sample import PlaneFactory, create_sqlite_plane, sample_issue, strip_tags, utcnow
from pi_framework.settings import get_settings
from pi_framework.worker_process import WorkerProcess, wait_for

#: variables the demo controls (anything pointing at real services is removed)
_SERVICE_VARIABLES = (
    "PI_DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "OPENSEARCH_URL",
    "PI_SINKS",
    "PLANE_DATABASE_URL",
    "PI_LOAD_PLUGINS",
    "PI_DISABLE_PLUGINS",
)

PAGES = [
    (
        "On-call rotation and escalation",
        "<h2>Rotation</h2><p>Each engineer is on call for one week, Monday 10:00 to Monday "
        "10:00. Swap shifts in the #oncall channel.</p><h2>Escalation</h2><p>Page the secondary after 15 minutes, then the "
        "engineering manager.</p>",
    ),
    (
        "Release process",
        "<ol><li>Cut a release branch on Tuesday</li><li>QA signs off the staging build</li>"
        "<li>Deploy with a canary at 5% for one hour</li><li>Announce in #releases</li></ol>",
    ),
    (
        "Incident postmortem: payment outage",
        "<p>On March 3 card payments failed for 42 minutes because the Stripe "
        "webhook secret was rotated without updating the worker. Action items: alert on webhook signature errors.</p>",
    ),
    ("Q3 roadmap", "<p>Themes: enterprise SSO, offline mobile app, faster search, usage-based billing.</p>"),
]
PRIVATE_PAGE = ("My 1:1 notes", "<p>Ask about the promotion timeline and the conference budget.</p>")
#: a comment on each workspace's first work item, written when an installed source reads Plane's comments table
COMMENT = "<p>Rolled back the canary: the payment sheet still never opens on iPadOS 18.</p>"
COMMENT_QUERY = "rolled back the canary"
QUERIES = [
    "checkout crashes in Safari",
    "who do I page when on call?",
    "why did card payments fail?",
    "single sign-on with Okta",
    "invoice shows the wrong currency",
]


def _seed(plane: PlaneFactory, issues_per_project: int) -> dict[str, dict[str, Any]]:
    """Three workspaces (two on paid plans) with projects, issues, pages; returns rows by workspace name.

    Each workspace has an owner (admin) and a teammate (member), both members of every project: search shows a user
    only the projects they belong to in Plane, and private pages only to their owner.
    """
    created: dict[str, dict[str, Any]] = {}
    number = 0
    for name, plan, identifiers in (
        ("Acme", "PRO", ("WEB", "API", "MOB")),
        ("Globex", "BUSINESS", ("WEB", "OPS")),
        ("Initech", "FREE", ("TPS",)),
    ):
        owner = plane.user(display_name=f"{name.lower()}-admin")
        workspace = plane.workspace(owner, name=name)
        plane.workspace_license(workspace, plan)
        teammate = plane.user(display_name=f"{name.lower()}-teammate")
        plane.workspace_member(workspace, owner, role=20)
        plane.workspace_member(workspace, teammate, role=15)
        rows: dict[str, Any] = {"workspace": workspace, "owner": owner, "teammate": teammate, "issues": [], "pages": []}
        for identifier in identifiers:
            project = plane.project(workspace, identifier=identifier, name=f"{name} {identifier}")
            states = [plane.state(project, group) for group in ("backlog", "started", "completed")]
            rows.setdefault("projects", []).append(project)
            plane.project_member(project, owner, role=20)
            plane.project_member(project, teammate, role=15)
            for n in range(issues_per_project):
                issue_name, html = sample_issue(number)
                number += 1
                rows["issues"].append(
                    plane.issue(
                        project,
                        issue_name,
                        html,
                        state=states[n % 3],
                        sequence_id=n + 1,
                        priority=("urgent", "high", "medium", "low", "none")[n % 5],
                    )
                )
            plane.issue(
                project, "Draft: rethink the pricing page", "<p>not ready</p>", is_draft=True, sequence_id=issues_per_project + 1
            )
        for title, html in PAGES:
            rows["pages"].append(plane.page(workspace, name=title, description_html=html, projects=(rows["projects"][0],)))
        plane.page(workspace, owner=owner, name=PRIVATE_PAGE[0], description_html=PRIVATE_PAGE[1], access=1)
        created[name] = rows
    return created


def _seed_comments(plane: PlaneFactory, workspaces: dict[str, dict[str, Any]]) -> int:
    """A comment by the teammate on the first work item of each workspace, in Plane's ``issue_comments``, when an
    installed source declares that table (the core's Plane schema does not); returns how many were written."""
    table = next((table for table in runtime.plane_tables() if table.name == "issue_comments"), None)
    if table is None:
        return 0
    for rows in workspaces.values():
        issue, author, now = rows["issues"][0], rows["teammate"]["id"], utcnow()
        plane.insert(
            table,
            {
                "id": str(uuid.uuid4()), "created_at": now, "updated_at": now, "deleted_at": None,
                "created_by_id": author, "updated_by_id": None, "workspace_id": issue["workspace_id"],
                "project_id": issue["project_id"], "issue_id": issue["id"], "actor_id": author, "parent_id": None,
                "description_id": None, "comment_stripped": strip_tags(COMMENT) or "", "comment_json": {},
                "comment_html": COMMENT, "attachments": [], "access": "INTERNAL", "external_source": None,
                "external_id": None, "edited_at": None,
            },
        )  # fmt: skip
    return len(workspaces)


def _use(env: dict[str, str]) -> None:
    """Point this process at the demo's settings (the worker gets the same environment)."""
    runtime.reconfigure(env, unset=_SERVICE_VARIABLES)


def _timed(action: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = action()
    return value, time.perf_counter() - start


def _show_hits(hits: list, seconds: float, note: str = "") -> None:
    click.echo(f"    {len(hits)} hit(s) in {seconds * 1000:.0f} ms{note}")
    for hit in hits:
        body = hit.text.replace("\n", " ")
        body = body[len(hit.title) :].strip() if body.startswith(hit.title) else body
        click.echo(f"    {hit.score:.4f}  {hit.kind:<8} {hit.title[:58]:<58} | {body[:45]}")


@click.command()
@click.option("--issues-per-project", default=30, show_default=True, help="Sample issues in each project.")
@click.option("--interval", default=2, show_default=True, help="Live-sync interval (CELERY_VECTOR_SYNC_INTERVAL), seconds.")
@click.option("--timeout", default=600, show_default=True, help="Give up on any step after this many seconds.")
def demo(issues_per_project: int, interval: int, timeout: int) -> None:
    """Run the whole product on this machine: sample Plane data, a worker with beat, live sync, search."""
    from pi_framework import sync
    from pi_framework.celery_app import create_app
    from pi_framework.search import search
    from pi_framework.sync.compare import missing_or_stale_count
    from pi_framework.sync.jobs import Jobs

    base = get_settings().data_dir.resolve() / "demo"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    click.secho(f"1. A Plane database with sample content: {base / 'plane.sqlite'}", bold=True)
    plane, seconds = _timed(lambda: create_sqlite_plane(str(base / "plane.sqlite"), runtime.plane_tables()))
    workspaces, seconds = _timed(lambda: _seed(plane, issues_per_project))
    comments = _seed_comments(plane, workspaces)
    for name, rows in workspaces.items():
        click.echo(
            f"    {name:<8} {rows['workspace']['id']}  {len(rows['projects'])} projects, {len(rows['issues'])} issues, "
            f"{len(rows['pages']) + 1} pages" + (", 1 comment" if comments else "")
        )
    click.echo(f"    (written in {seconds:.1f} s)")

    env = {
        "PI_DATA_DIR": str(base / "pi-data"),
        "PLANE_DATABASE_URL": f"sqlite:///{base / 'plane.sqlite'}",
        "CELERY_DEFAULT_QUEUE": f"pi_demo_{uuid.uuid4().hex[:8]}",
        "CELERY_VECTOR_SYNC_INTERVAL": str(interval),
        "PI_REDISPATCH_INTERVAL": "10",
        "PI_RECONCILE_INTERVAL": "30",
        "PI_LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
    }
    _use(env)
    create_app()  # the app jobs are dispatched through, on the demo's embedded broker
    click.secho("2. A worker with beat on the embedded broker (SQLite), embedded sink, fastembed", bold=True)
    # this process only shows what goes wrong; the worker logs everything to its file
    worker = WorkerProcess({**os.environ, "PI_LOG_LEVEL": "INFO"}, base / "worker.log", beat=True, concurrency=2)
    try:
        _, seconds = _timed(lambda: worker.wait_ready(timeout))
        click.echo(f"    ready in {seconds:.1f} s (log: {base / 'worker.log'})")
        _vectorize(workspaces, timeout)
        _live_sync(plane, workspaces, search, timeout)
        click.secho(
            "5. Hybrid search (kNN + BM25, reciprocal rank fusion), always filtered by workspace and the user's Plane access",
            bold=True,
        )
        acme = workspaces["Acme"]["workspace"]["id"]
        owner, teammate = workspaces["Acme"]["owner"]["id"], workspaces["Acme"]["teammate"]["id"]
        for position, query in enumerate(QUERIES):
            click.echo(f"  Acme, as a member of every project: {query!r}")
            hits, seconds = _timed(lambda query=query: search(query, acme, user_id=teammate, limit=3))
            _show_hits(hits, seconds, " (loads the model in this process)" if position == 0 else "")
        if comments:
            click.echo(f"  Acme, as a member of every project: {COMMENT_QUERY!r} (a comment, on the issue edited in step 4)")
            hits, seconds = _timed(lambda: search(COMMENT_QUERY, acme, user_id=teammate, limit=2))
            _show_hits(hits, seconds)
        click.echo("  Acme, as the owner of a private page: 'promotion timeline'")
        hits, seconds = _timed(lambda: search("promotion timeline", acme, user_id=owner, limit=2))
        _show_hits(hits, seconds)
        click.echo("  Acme, as a teammate: 'promotion timeline' (the private page never appears)")
        hits, seconds = _timed(lambda: search("promotion timeline", acme, user_id=teammate, limit=2))
        _show_hits(hits, seconds)
        initech = workspaces["Initech"]["workspace"]["id"]
        click.echo(f"  Initech (FREE plan, not vectorized): {len(search('TPS report', initech))} hits")
        missing = {
            name: missing_or_stale_count(rows["workspace"]["id"], sync.sources())
            for name, rows in workspaces.items()
            if name != "Initech"
        }
        click.echo(f"    documents missing or stale in the index: {missing}")
        jobs = Jobs(get_database(), get_settings())
        for name, rows in workspaces.items():
            job = jobs.latest(rows["workspace"]["id"])
            if job is not None:
                click.echo(
                    f"    {name}: job {job.id} {job.status}, live sync {'on' if job.live_sync_enabled else 'off'}, "
                    f"last live sync {job.last_live_sync_at}"
                )
    finally:
        worker.stop()
    click.secho(
        f"Done. Everything is under {base}; try:  PI_DATA_DIR={base / 'pi-data'} pi search 'release' --workspace {acme}",
        bold=True,
    )


def _vectorize(workspaces: dict[str, dict[str, Any]], timeout: int) -> None:
    from pi_framework.sync.jobs import Jobs
    from pi_framework.sync.vectorize import request_vectorization

    settings = get_settings()
    plans = _plans(settings)
    vectorized = ", ".join(settings.PI_VECTORIZED_PLANS)
    source = "plans from the workspace_plans hook" if plans is not None else "no plugin answers workspace_plans: every workspace"
    click.secho(f"3. Vectorization of the workspaces on {vectorized} ({source}; progress from the job rows)", bold=True)
    start = time.perf_counter()
    paid = {
        name: rows["workspace"]["id"]
        for name, rows in workspaces.items()
        if plans is None or plans.get(rows["workspace"]["id"]) in settings.PI_VECTORIZED_PLANS
    }
    for workspace_id in paid.values():
        request_vectorization(workspace_id)
    jobs = Jobs(get_database(), settings)
    last_line = ""

    def finished() -> bool:
        nonlocal last_line
        states = {name: jobs.latest(workspace_id) for name, workspace_id in paid.items()}
        line = "    " + "   ".join(
            f"{name}: {job.status} {job.progress_done}/{job.progress_total or '?'}" if job else f"{name}: waiting"
            for name, job in states.items()
        )
        if line != last_line:
            click.echo(line)
            last_line = line
        failed = [name for name, job in states.items() if job and job.status == JobStatus.FAILED]
        if failed:
            raise click.ClickException(f"vectorization failed for {failed}: {[states[name].error for name in failed]}")
        return all(job is not None and job.status == JobStatus.SUCCESS for job in states.values())

    wait_for(finished, timeout, 0.5, "vectorization", fatal=click.ClickException)  # a failed job never succeeds
    total = sum(jobs.latest(workspace_id).progress_total or 0 for workspace_id in paid.values())
    seconds = time.perf_counter() - start
    click.echo(f"    {total} documents vectorized in {seconds:.1f} s ({total / seconds:.1f} docs/s, model load included)")
    for name, rows in workspaces.items():
        if name not in paid:
            job = jobs.latest(rows["workspace"]["id"])
            click.echo(f"    {name} ({plans.get(rows['workspace']['id'])}): {'no job' if job is None else f'job {job.status}!?'}")


def _plans(settings: Any) -> dict[str, str] | None:
    """``workspace -> upper-cased plan`` from the first plugin answering ``workspace_plans``; ``None`` if none does."""
    answer = runtime.get_registry().pm.hook.workspace_plans(settings=settings)
    return None if answer is None else {workspace_id: plan.upper() for workspace_id, plan in answer}


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(demo)


def _live_sync(plane: PlaneFactory, workspaces: dict[str, dict[str, Any]], search: Callable[..., list], timeout: int) -> None:
    click.secho("4. Live sync: edit, create, archive, delete in Plane; beat's trigger-live-sync picks it up", bold=True)
    acme = workspaces["Acme"]
    workspace_id, owner = acme["workspace"]["id"], acme["owner"]["id"]

    def reflected(label: str, text: str, document_id: str, searchable: bool) -> None:
        started = time.perf_counter()

        def done() -> bool:
            hits = search(text, workspace_id, user_id=owner, mode="text", limit=20)
            return (document_id in {hit.document_id for hit in hits}) == searchable

        wait_for(done, timeout, 0.1, f"live sync to {label}")
        outcome = "searchable" if searchable else "gone from search"
        click.echo(f"    {label:<42} -> {outcome} after {time.perf_counter() - started:.1f} s")

    edited, page = acme["issues"][0], acme["pages"][3]
    plane.update(
        schema.issues,
        edited["id"],
        name="Checkout button unresponsive on iPad",
        description_html="<p>The Apple Pay sheet never opens on iPadOS 18.</p>",
    )
    reflected("edit an issue's title and description", "Apple Pay sheet", f"issues:{edited['id']}", True)
    created = plane.issue(acme["projects"][1], "Upgrade the Kubernetes node pool", "<p>Move to 1.31 before end of life.</p>")
    reflected("create an issue", "Kubernetes node pool", f"issues:{created['id']}", True)
    plane.archive(schema.issues, created["id"], utcnow().date())
    reflected("archive that issue", "Kubernetes node pool", f"issues:{created['id']}", False)
    plane.soft_delete(schema.pages, page["id"])
    reflected("soft-delete a page", "usage-based billing", f"pages:{page['id']}", False)
