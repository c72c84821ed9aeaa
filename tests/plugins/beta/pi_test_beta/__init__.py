"""Test plugin: one task, one beat entry, one command, a switched-off job."""

import click

from pi_framework import hookimpl
from pi_framework.contract.contributions import PeriodicJob


def beta_marker(name: str) -> str:
    from pi_test_alpha import append_marker

    return append_marker(f"beta-{name}")


@hookimpl
def register_tasks(register):
    register(beta_marker, name="pi.celery_app.test_beta_marker")


@hookimpl
def register_periodic_jobs(register, settings):
    register(PeriodicJob("test-beta-tick", "pi.celery_app.test_beta_marker", every=1.0, args=("beat",)))
    register(PeriodicJob("test-beta-off", "pi.celery_app.test_beta_marker", every=1.0, enabled=False))


@hookimpl
def register_commands(cli):
    @cli.command(name="beta-hello")
    def beta_hello():
        """Say hello from the beta test plugin."""
        click.echo("hello from beta")
