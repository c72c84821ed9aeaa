"""Built-in plugin ``search``: the ``pi search`` command."""

from __future__ import annotations

import json
import re

import click

from pi_framework import hookimpl

_SNIPPET_CHARS = 160


def snippet(text: str, query: str, width: int = _SNIPPET_CHARS) -> str:
    """About *width* characters of *text* around the first word of *query* found in it, on one line."""
    flat = " ".join(text.split())
    words = [word for word in re.findall(r"\w+", query.lower()) if len(word) > 2]
    lowered = flat.lower()
    at = min((lowered.find(word) for word in words if word in lowered), default=0)
    start = max(0, at - width // 3)
    piece = flat[start : start + width]
    return ("…" if start else "") + piece + ("…" if start + width < len(flat) else "")


def label(hit) -> str:  # noqa: ANN001 - a Hit
    """How a hit is named on one line: its key, then its title without the key repeated (issue titles start with it)."""
    title = hit.title or ""
    if hit.key and title.startswith(hit.key):
        title = title[len(hit.key) :].strip()
    return " · ".join(part for part in (hit.key, title) if part) or hit.document_id


def details(hit) -> str:  # noqa: ANN001 - a Hit
    """A work item's state, priority, labels and assignees on one line (``""`` for hits without them)."""
    metadata = hit.metadata or {}
    parts = []
    if state := metadata.get("state") or metadata.get("state_group"):
        group = metadata.get("state_group")
        parts.append(f"state {state}" + (f" ({group})" if group and group != state else ""))
    if priority := metadata.get("priority"):
        parts.append(f"priority {priority}")
    if labels := metadata.get("labels"):
        parts.append("labels " + ", ".join(map(str, labels)))
    if assignees := metadata.get("assignees"):
        parts.append(f"{len(assignees)} assignee{'' if len(assignees) == 1 else 's'}")
    return " · ".join(parts)


#: ``pi search`` options for Plane's filters: option name -> Filters field
FILTER_OPTIONS = {
    "state": "state",
    "state_group": "state_group",
    "priority": "priority",
    "label": "labels",
    "assignee": "assignees",
    "project": "project",
}


@hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.command("search")
    @click.argument("query")
    @click.option("--workspace", "-w", "workspace_id", required=True, help="Workspace id (global content is always included).")
    @click.option("--kind", "-k", "kinds", multiple=True, help="Only these kinds (repeatable): issues, pages, docs, ...")
    @click.option(
        "--user",
        "-u",
        "user_id",
        help="Search as this Plane user: their private content, and only the projects they may read in Plane.",
    )
    @click.option(
        "--all-projects",
        is_flag=True,
        help="Operators: every project, without membership checks (logged). Without it and --user, no project content.",
    )
    @click.option("--state", multiple=True, help="Only work items in this state (its name; repeatable: any of them).")
    @click.option(
        "--state-group",
        multiple=True,
        type=click.Choice(["backlog", "unstarted", "started", "completed", "cancelled"]),
        help="Only work items whose state is of this group (repeatable).",
    )
    @click.option(
        "--priority",
        multiple=True,
        type=click.Choice(["urgent", "high", "medium", "low", "none"]),
        help="Only work items of this priority (repeatable).",
    )
    @click.option("--label", multiple=True, help="Only work items with this label (its name; repeatable: any of them).")
    @click.option("--assignee", multiple=True, help="Only work items assigned to this user id (repeatable: any of them).")
    @click.option("--project", multiple=True, help="Only content of this project: its id or identifier, e.g. WEB (repeatable).")
    @click.option("--limit", "-n", default=10, show_default=True, type=click.IntRange(1, 1000))
    @click.option("--mode", type=click.Choice(["hybrid", "text", "vector"]), default="hybrid", show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="Print the hits as JSON.")
    def search_command(
        query: str,
        workspace_id: str,
        kinds: tuple[str, ...],
        user_id: str | None,
        all_projects: bool,
        limit: int,
        mode: str,
        as_json: bool,
        **chosen: tuple[str, ...],
    ) -> None:
        """Search a workspace: hybrid kNN + BM25 over every configured sink, as USER sees it in Plane."""
        from loguru import logger

        from pi_framework.search import search

        if all_projects:
            logger.warning("pi search --all-projects: workspace {}, every project, no membership check", workspace_id)
        filters = {field: list(chosen[option]) for option, field in FILTER_OPTIONS.items() if chosen.get(option)}
        hits = search(
            query,
            workspace_id,
            kinds=kinds or None,
            user_id=user_id,
            limit=limit,
            mode=mode,
            all_projects=all_projects,
            filters=filters or None,
        )
        if as_json:
            click.echo(json.dumps([hit.__dict__ for hit in hits], indent=2, default=str))
            return
        if not hits:
            click.echo("no results")
        for number, hit in enumerate(hits, start=1):
            click.echo(f"{number:>2}. [{hit.kind}] {label(hit)}  (score {hit.score:.4f})")
            if about := details(hit):
                click.echo(f"    {about}")
            click.echo(f"    {snippet(hit.text, query)}")
            if hit.url:
                click.echo(f"    {hit.url}")
