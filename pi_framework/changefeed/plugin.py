"""Hooks of the change feed (registered by the built-in plugin ``workspace_sync``, as its metrics hooks are).

* ``pi changefeed setup [--dry-run]``: the publication (the watched tables only), replica identities, the slot; without
  the rights, the exact SQL a DBA must run, and exit 1;
* ``pi changefeed run``: the consumer in the foreground (under the same lease as the workers' thread);
* ``pi changefeed status [--json]``: on or polling and why, the slot's lag, pending compare requests;
* ``pi changefeed teardown``: drop the slot and the publication (polling only from then on).

In a worker the consumer is a thread of the main process, started on Celery's ``worker_ready`` and stopped on
``worker_shutdown``; every worker runs one, and the lease lets exactly one of them stream.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Any

import click
from celery import signals

from pi_framework import hookimpl, runtime
from pi_framework.settings import Settings

_thread: dict[str, Any] = {}


def start_in_worker(settings: Settings) -> threading.Thread | None:
    """Start the feed's thread in this process (once)."""
    from pi_framework.changefeed.feed import Runner

    if _thread.get("thread") is not None and _thread["thread"].is_alive():
        return None
    stop = threading.Event()
    runner = Runner(settings, stop)
    thread = threading.Thread(target=runner.run, name="pi-changefeed", daemon=True)
    _thread.update(thread=thread, stop=stop)
    thread.start()
    return thread


def stop_in_worker(timeout: float = 10.0) -> None:
    if _thread.get("stop") is not None:
        _thread["stop"].set()
        _thread["thread"].join(timeout)
        _thread.clear()


@signals.worker_ready.connect
def _worker_ready(**_: Any) -> None:
    settings = runtime.get_registry().settings
    if settings.PI_CHANGEFEED_ENABLED:
        start_in_worker(settings)


@signals.worker_shutdown.connect
def _worker_shutdown(**_: Any) -> None:
    stop_in_worker()


def report(settings: Settings) -> dict[str, Any]:
    """What ``pi status`` and ``pi changefeed status`` show: the slot's status row, else why the feed is off now."""
    from pi_framework.changefeed import requests
    from pi_framework.changefeed.feed import availability
    from pi_framework.sync import compare_requests

    slot = settings.PI_CHANGEFEED_SLOT
    status = requests.load_status(slot).get(slot) or {}
    if not status.get("mode"):
        reason = availability(settings)
        status = {**status, "mode": "polling" if reason else "idle", "reason": reason or "set up; no consumer has run yet"}
    return {"slot": slot, **status, "compare_requests": len(compare_requests.compare_requests())}


def describe(status: dict[str, Any]) -> str:
    line = f"change feed ({status['slot']}): {status['mode']}"
    if status.get("reason"):
        line += f" ({status['reason']})"
    if status.get("lag_bytes") is not None:
        line += f", slot lag {status['lag_bytes']} bytes"
    if status.get("confirmed_lsn"):
        line += f", confirmed {status['confirmed_lsn']}"
    if status.get("mode") != "feed":
        line += "; changes are found by polling updated_at"
    return line


@hookimpl(specname="register_commands")
def changefeed_commands(cli: click.Group) -> None:
    @cli.group("changefeed")
    def changefeed() -> None:
        """The change feed from Plane's PostgreSQL (logical replication): set-up, consumer, status."""

    @changefeed.command("setup")
    @click.option("--dry-run", is_flag=True, help="Print what would be done, change nothing.")
    def setup_command(dry_run: bool) -> None:
        """Create the publication (the watched tables), replica identities and the slot; print a DBA's SQL if needed."""
        from pi_framework.changefeed.feed import Unavailable, plan, setup

        settings = runtime.get_registry().settings
        try:
            if dry_run:
                found = plan(settings)
                click.echo(f"wal_level={found.wal_level} role={found.role} replication={'yes' if found.can_replicate else 'no'}")
                click.echo(f"watched tables: {', '.join(found.tables)}")
                for statement in found.statements or ["-- nothing to do"]:
                    click.echo(statement)
                return
            found = setup(settings)
        except Unavailable as exc:
            click.echo(f"pi changefeed setup: {exc.reason}", err=True)
            for statement in exc.sql:
                click.echo(statement)
            if exc.sql:
                click.echo("-- then run: pi changefeed setup", err=True)
            click.echo("changes are found by polling updated_at until then", err=True)
            sys.exit(1)
        for statement in found.statements:
            click.echo(f"done: {statement}")
        click.echo(
            f"change feed ready: slot {settings.PI_CHANGEFEED_SLOT}, publication {settings.PI_CHANGEFEED_PUBLICATION} "
            f"({', '.join(found.tables)}); workers stream it (or: pi changefeed run)"
        )

    @changefeed.command("run")
    def run_command() -> None:
        """Run the consumer here until SIGTERM or Ctrl-C (one process at a time streams: the others wait on a lease)."""
        from pi_framework.changefeed.feed import Runner

        settings = runtime.get_registry().settings
        stop = threading.Event()

        def stopping(*_: Any) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, stopping)
        signal.signal(signal.SIGINT, stopping)
        Runner(settings, stop).run()

    @changefeed.command("status")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def status_command(as_json: bool) -> None:
        """On or polling, and why; the slot's lag; pending compare requests."""
        from pi_framework.changefeed.feed import Unavailable, slot_info

        settings = runtime.get_registry().settings
        status = report(settings)
        try:
            info = slot_info(settings)
            status.update(
                slot_exists=info.exists, lag_bytes=info.lag_bytes, confirmed_lsn=info.confirmed_lsn, active_pid=info.active_pid
            )
        except Unavailable as exc:
            status.update(slot_exists=None, slot_error=exc.reason)
        if as_json:
            click.echo(json.dumps(status, indent=2, default=str))
        else:
            click.echo(describe(status))
            click.echo(f"compare requests pending: {status['compare_requests']}")

    @changefeed.command("teardown")
    def teardown_command() -> None:
        """Drop the slot and the publication: Plane keeps no WAL for the feed; changes are found by polling."""
        from pi_framework.changefeed import requests
        from pi_framework.changefeed.feed import _connect, _quote, drop_slot
        from pi_framework.sync import state

        settings = runtime.get_registry().settings
        connection = _connect(settings)
        try:
            drop_slot(settings, connection)
            with connection.cursor() as cur:
                cur.execute(f"DROP PUBLICATION IF EXISTS {_quote(settings.PI_CHANGEFEED_PUBLICATION)}")
        finally:
            connection.close()
        state.remove(requests.SETUP, settings.PI_CHANGEFEED_SLOT)
        requests.save_status(
            settings.PI_CHANGEFEED_SLOT, mode="polling", reason="torn down (pi changefeed teardown)", lag_bytes=None
        )
        click.echo(f"dropped slot {settings.PI_CHANGEFEED_SLOT} and publication {settings.PI_CHANGEFEED_PUBLICATION}")
