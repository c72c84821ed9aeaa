"""Built-in plugin ``index_generations``: a model change without downtime (:mod:`pi_framework.sync.generations`).

* ``advance_index_generations`` (beat ``advance-index-generations``, every ``PI_GENERATION_INTERVAL``): starts a
  generation for a changed ``PI_EMBEDDER``/``PI_EMBEDDING_MODEL``, copies it, swaps it live, drops the old one;
* health check ``index_generations``: fails while a build's copy fails;
* ``pi generations``: every generation with its progress; ``pi generations advance [--until-live]``: the same pass
  now (``--until-live`` repeats it until the new generation is live: a model change on a stopped deployment).
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from pi_framework import hookimpl
from pi_framework.contract.contributions import HealthCheck, PeriodicJob
from pi_framework.sync import generations

ADVANCE_TASK = "pi.celery_app.advance_index_generations"


def advance_index_generations() -> dict[str, Any]:
    """Celery task ``pi.celery_app.advance_index_generations``."""
    return generations.advance()


def check_index_generations() -> dict[str, Any]:
    """Health check ``index_generations``: the live generation, and a build's progress; fails while the last copy of a
    build failed (its error)."""
    rows = generations.status()
    for row in rows:
        if row["status"] == "building" and row["error"]:
            raise RuntimeError(f"index generation {row['generation']} ({row['model']}): the copy fails: {row['error']}")
    return {row["status"]: row["generation"] for row in rows if row["status"] in ("live", "building")}


@click.group("generations", invoke_without_command=True)
@click.pass_context
def generations_command(context: click.Context) -> None:
    """Index generations: the live one, one being built for a model change, replaced ones not dropped yet."""
    if context.invoked_subcommand is None:
        click.echo(json.dumps(generations.status(), indent=2))


@generations_command.command("advance")
@click.option("--until-live", is_flag=True, help="Repeat until no generation is being built.")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="Seconds --until-live waits at most.")
def advance_command(until_live: bool, timeout: float) -> None:
    """Run one pass now: start, copy, swap, drop."""
    deadline = time.monotonic() + timeout
    while True:
        result = generations.advance()
        click.echo(json.dumps(result))
        if not until_live or "building" not in result or "swapped" in result:
            return
        if time.monotonic() >= deadline:
            raise click.ClickException(f"generation {result['building']} is not live after {timeout:.0f} s")
        time.sleep(1.0)


@hookimpl
def register_tasks(register) -> None:  # noqa: ANN001
    register(advance_index_generations, name=ADVANCE_TASK, acks_late=False)


@hookimpl
def register_periodic_jobs(register, settings) -> None:  # noqa: ANN001
    register(PeriodicJob("advance-index-generations", ADVANCE_TASK, every=settings.PI_GENERATION_INTERVAL))


@hookimpl
def register_health_checks(register) -> None:  # noqa: ANN001
    register(HealthCheck("index_generations", check_index_generations))


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(generations_command)
