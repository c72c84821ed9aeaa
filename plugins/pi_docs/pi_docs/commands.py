"""``pi feed-docs``: sync the configured documentation repositories now, with a progress bar and a summary."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from pi_docs.repos import RepoSpec, RepoSpecError, parse_repo_specs
from pi_docs.settings import docs_settings
from pi_docs.sync import DocsSync
from pi_docs.tasks import summarise
from pi_framework.api import get_registry


@click.command("feed-docs")
@click.option(
    "--repo", "repos", multiple=True, help="Only this repository (owner/repo[@branch][:prefix] or file:///path); repeatable."
)
@click.option(
    "--full",
    is_flag=True,
    help="Read every file of the tree, ignoring the last synced commit (unchanged files are not re-embedded).",
)
@click.option("--prune", is_flag=True, help="Also delete indexed docs of repositories or prefixes no longer in PI_DOCS_REPOS.")
def feed_docs(repos: tuple[str, ...], full: bool, prune: bool) -> None:
    """Feed documentation from PI_DOCS_REPOS into the index (only what changed since the last run, unless --full)."""
    settings, docs = get_registry().settings, docs_settings()
    targets = list(repos) or docs.PI_DOCS_REPOS
    if not targets:
        raise click.UsageError("no repository: set PI_DOCS_REPOS or pass --repo")
    if prune and repos:
        raise click.UsageError("--prune works on the whole configuration: do not combine it with --repo")
    bars: dict[str, Any] = {}

    def progress(spec: RepoSpec, done: int, total: int) -> None:
        bar = bars.get(spec.scope)
        if bar is None:
            bar = bars[spec.scope] = click.progressbar(length=total, label=str(spec), file=sys.stderr)
            bar.__enter__()
        bar.update(1)

    started = time.monotonic()
    sync = DocsSync(settings, progress=progress)
    try:
        results = sync.run(targets, full=full)
    finally:
        for bar in bars.values():  # a repository that failed half-way leaves its bar open
            bar.__exit__(None, None, None)
    if prune:
        try:
            configured = parse_repo_specs(docs.PI_DOCS_REPOS)
        except RepoSpecError as exc:  # pruning against a mistyped list would delete that entry's docs
            raise click.ClickException(f"not pruning: {exc}") from None
        click.echo(f"pruned: {sync.prune(configured)} document(s) of repositories no longer configured")
    for result in results:
        line = f"{result.repo}: {result.status} ({result.mode})"
        if result.status == "failed":
            line += f" - {result.error}"
        else:
            line += f" added={result.added} updated={result.updated} removed={result.removed} unchanged={result.unchanged}"
            line += f" skipped={result.skipped}"
        click.echo(f"{line} api_calls={result.api_calls} {result.seconds:.2f}s")
    totals = summarise(results)
    click.echo(
        f"total: {totals['repos']} repositories, added {totals['added']}, updated {totals['updated']}, removed {totals['removed']}, "
        f"{totals['failed']} failed, {totals['api_calls']} API calls, {time.monotonic() - started:.2f}s"
    )
    sys.exit(1 if totals["failed"] else 0)
