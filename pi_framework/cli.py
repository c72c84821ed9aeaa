"""The ``pi`` command. Core commands live here; plugins add theirs through ``register_commands``."""

from __future__ import annotations

import json
import sys

import click

from pi_framework import __version__, runtime
from pi_framework.log import configure_logging
from pi_framework.settings import SettingsError, get_settings


@click.group()
@click.version_option(__version__, prog_name="pi")
def cli() -> None:
    """pi-framework: keep Plane's search indices in sync."""


@cli.command()
@click.option("--concurrency", "-c", default=2, show_default=True, help="Worker processes.")
@click.option("--beat/--no-beat", default=True, show_default=True, help="Run beat inside the worker.")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--pool", default="prefork", show_default=True)
@click.option(
    "--hostname",
    "-n",
    default="celery@%h",
    show_default=True,
    help="The worker's node name, as `celery worker -n` (%h: host, %n: host name, %d: domain); give each worker on one "
    "host its own, e.g. `-n vectorizer@%h`: two workers of one name on one broker collide.",
)
def worker(concurrency: int, beat: bool, loglevel: str, pool: str, hostname: str) -> None:
    """Run a worker (with embedded beat by default): the whole service on one machine."""
    from pi_framework.celery_app import celery_app

    argv = [
        "worker",
        f"--concurrency={concurrency}",
        f"--loglevel={loglevel}",
        f"--pool={pool}",
        f"--hostname={hostname}",
        "-Q",
        get_settings().CELERY_DEFAULT_QUEUE,
    ]
    if beat:
        argv.append("-B")
    from pi_framework.default_plugins.metrics_exporter import serve_worker

    serve_worker(get_settings())  # PI_METRICS_PORT set: /metrics of this machine's worker processes
    celery_app.worker_main(argv)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(as_json: bool) -> None:
    """List loaded plugins, what each contributes, and those that failed."""
    registry = runtime.get_registry()
    data = {
        "loaded": [
            {"name": info.name, "distribution": info.distribution, "version": info.version, "contributes": info.contributes}
            for info in registry.plugins.values()
        ],
        "failed": registry.failures,
        "disabled_jobs": [job.name for job in registry.periodic_jobs.values() if not job.enabled],
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for info in data["loaded"]:
        click.echo(f"{info['name']}  ({info['distribution']} {info['version']})")
        for what, names in sorted(info["contributes"].items()):
            click.echo(f"    {what}: {', '.join(sorted(names))}")
    if data["disabled_jobs"]:
        click.echo(f"disabled periodic jobs: {', '.join(data['disabled_jobs'])}")
    for name, reason in registry.failures.items():
        click.echo(f"FAILED {name}: {reason}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def health(as_json: bool) -> None:
    """Run every health check in this process; exit 1 if any fails."""
    from pi_framework.health import run_health_checks

    report = run_health_checks(runtime.get_registry())
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        for name, result in report["checks"].items():
            status = "ok  " if result["ok"] else "FAIL"
            detail = result.get("error") or {k: v for k, v in result.items() if k not in ("ok", "seconds")}
            click.echo(f"{status} {name}: {detail}")
        for name, reason in report["plugins"]["failed"].items():
            click.echo(f"FAIL plugin {name}: {reason}")
    sys.exit(0 if report["ok"] else 1)


@cli.command(name="settings")
@click.option("--markdown", is_flag=True, help="Print the table of variables, defaults and meanings (for the README).")
def settings_command(markdown: bool) -> None:
    """Show every environment variable with its current value (secrets masked): the core's, then each plugin's.

    A plugin whose settings are invalid is named with the variable on stderr, and the exit status is 2.
    """
    from pi_framework.settings import Settings, describe_variables, redacted_values

    registry = runtime.get_registry()
    by_plugin: dict[str, list] = {}
    for key, instance in registry.settings_models.items():
        by_plugin.setdefault(registry.owner[("settings", key)], []).append(instance)
    if markdown:
        header = "| variable | default | meaning |\n|---|---|---|"
        click.echo(header)
        for name, default, description in describe_variables(Settings):
            click.echo(f"| `{name}` | {default} | {description} |")
        for plugin, instances in sorted(by_plugin.items()):
            click.echo(f"\nPlugin `{plugin}`:\n\n{header}")
            for instance in instances:
                for name, default, description in describe_variables(type(instance)):
                    click.echo(f"| `{name}` | {default} | {description} |")
        return
    for name, value in get_settings().redacted().items():
        click.echo(f"{name}={'' if value is None else value}")
    for plugin, instances in sorted(by_plugin.items()):
        click.echo(f"# plugin {plugin}")
        for instance in instances:
            for name, value in redacted_values(instance).items():
                click.echo(f"{name}={'' if value is None else value}")
    invalid = {plugin: reason for plugin, reason in registry.failures.items() if reason.startswith("invalid settings: ")}
    for plugin, reason in invalid.items():
        click.echo(f"error: plugin {plugin}: {reason.removeprefix('invalid settings: ')}", err=True)
    if invalid:
        sys.exit(2)


def build_cli() -> click.Group:
    """The ``pi`` group with every plugin's commands added."""
    runtime.get_registry().collect_commands(cli)
    return cli


def main() -> None:
    try:
        configure_logging(get_settings())
        group = build_cli()
    except SettingsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    group(prog_name="pi")


if __name__ == "__main__":
    main()
