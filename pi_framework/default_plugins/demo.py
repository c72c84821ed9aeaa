"""``pi demo``: the whole product on one machine (filled below)."""

from __future__ import annotations

import click


@click.command()
def demo() -> None:
    """Run the demo."""
