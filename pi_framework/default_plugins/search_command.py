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
    ) -> None:
        """Search a workspace: hybrid kNN + BM25 over every configured sink, as USER sees it in Plane."""
        from loguru import logger

        from pi_framework.search import search

        if all_projects:
            logger.warning("pi search --all-projects: workspace {}, every project, no membership check", workspace_id)
        hits = search(
            query, workspace_id, kinds=kinds or None, user_id=user_id, limit=limit, mode=mode, all_projects=all_projects
        )
        if as_json:
            click.echo(json.dumps([hit.__dict__ for hit in hits], indent=2, default=str))
            return
        if not hits:
            click.echo("no results")
        for number, hit in enumerate(hits, start=1):
            click.echo(f"{number:>2}. [{hit.kind}] {label(hit)}  (score {hit.score:.4f})")
            click.echo(f"    {snippet(hit.text, query)}")
            if hit.url:
                click.echo(f"    {hit.url}")
