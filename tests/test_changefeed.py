"""The change feed (logical replication from Plane's PostgreSQL): every path that leaves ``updated_at`` alone reaches
the index within seconds, nothing is lost when the consumer dies, and the slot cannot grow unnoticed.

PostgreSQL runs with ``wal_level=logical`` (tests/support/services.sh); every test has its own Plane database and its
own slot (dropped afterwards: a database with a slot cannot be dropped). The consumer runs in a thread of the test
(``Runner``) or as ``pi changefeed run`` in a subprocess; the live syncs run in the test, or in a real worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timedelta

import psycopg2
import pytest
from sqlalchemy import select, text

from pi_framework.changefeed import requests
from pi_framework.changefeed.feed import Runner, check_lag, plan, replication_url, setup, slot_info
from pi_framework.changefeed.pgoutput import Begin, Change, Commit, Decoder, Relation, Truncate
from pi_framework.db import get_database
from pi_framework.db.models import IndexedDocument, JobStatus
from pi_framework.plane import schema
from pi_framework.plane.sample import utcnow
from pi_framework.search import search
from pi_framework.sync import compare_requests, state
from pi_framework.sync.live import live_sync
from pi_framework.sync.vectorize import vectorize
from pi_framework.worker_process import wait_for

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------------- the world
@pytest.fixture
def world(plane_db, plane_settings, pi_env):
    slot = f"pi_test_{uuid.uuid4().hex[:12]}"
    settings = pi_env(
        PI_EMBEDDER="hashing",
        PI_CHUNK_TOKENS=24,
        PI_CHUNK_OVERLAP=0,
        PI_CHANGEFEED_SLOT=slot,
        PI_CHANGEFEED_PUBLICATION=slot,
        PI_CHANGEFEED_FEEDBACK_SECONDS=0.5,
        PI_CHANGEFEED_LAG_CHECK_SECONDS=0.5,
        PI_LEASE_SECONDS=3,
    )
    owner = plane_db.user()
    workspace = plane_db.workspace(owner)
    project = plane_db.project(workspace, identifier="ENG")
    triage = plane_db.state(project, group="triage", name="Triage")
    issues = [plane_db.issue(project, f"Issue about topic{n}", f"<p>body of issue {n}</p>") for n in range(6)]
    page = plane_db.page(
        workspace, owner=owner, name="Zebra migration plan", description_html="<p>zebra cluster</p>", projects=(project,)
    )
    ws = workspace["id"]
    assert vectorize(ws)["status"] == JobStatus.SUCCESS
    live_sync(ws)  # consume the overlap window of the full pass
    yield {
        "plane": plane_db,
        "settings": settings,
        "ws": ws,
        "project": project,
        "issues": issues,
        "page": page,
        "triage": triage,
    }
    drop(plane_db.url, slot)


def drop(url: str, slot: str) -> None:
    connection = psycopg2.connect(replication_url_of(url))
    connection.autocommit = True
    with connection.cursor() as cur:
        for _ in range(100):
            cur.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = %s AND active", (slot,)
            )
            cur.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s AND NOT active",
                (slot,),
            )
            cur.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,))
            if cur.fetchone() is None:
                break
            threading.Event().wait(0.1)
    connection.close()


def replication_url_of(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://")


class Feed:
    """The consumer in a thread of this process (no dispatch: the test runs the live syncs)."""

    def __init__(self, settings) -> None:  # noqa: ANN001
        self.stop = threading.Event()
        self.runner = Runner(settings, self.stop, retry_seconds=0.2, dispatch=False)
        self.thread = threading.Thread(target=self.runner.run, daemon=True)

    def __enter__(self) -> Feed:
        self.thread.start()
        wait_for(
            lambda: (requests.load_status().get(self.runner.settings.PI_CHANGEFEED_SLOT) or {}).get("mode") == "feed",
            20,
            message="the feed streams",
        )
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.fixture
def feed(world):
    setup(world["settings"])
    with Feed(world["settings"]) as running:
        yield running


def visible(ws: str, query: str = "topic0 topic1 topic2 topic3 topic4 topic5 zebra") -> set[str]:
    return {hit.document_id for hit in search(query, ws, mode="text", all_projects=True, limit=50)}


def ledger(ws: str) -> set[str]:
    with get_database().session() as session:
        return set(session.scalars(select(IndexedDocument.document_id).where(IndexedDocument.workspace_id == ws)))


def applied(ws: str, condition, timeout: float = 15.0, message: str = "the change is applied") -> None:  # noqa: ANN001
    """Wait until the feed asked for a compare, run the live sync the worker would run, until *condition* holds."""

    def step() -> bool:
        if compare_requests.compare_requested(ws) is not None:
            live_sync(ws)
        return condition()

    wait_for(step, timeout, interval=0.1, message=message)


def bulk(plane, statement: str, **params) -> None:  # noqa: ANN001
    """What Django's ``bulk_update`` / ``QuerySet.update`` / ``QuerySet.delete`` send: no ``updated_at``."""
    with plane.engine.begin() as connection:
        connection.execute(text(statement), params)


def ids(rows) -> list[str]:  # noqa: ANN001
    return [row["id"] for row in rows]


# ---------------------------------------------------------------------- the parser
def test_pgoutput_messages_are_parsed() -> None:
    import struct

    decoder = Decoder()
    relation = (
        b"R" + struct.pack("!I", 16400) + b"public\0issues\0" + b"d" + struct.pack("!H", 2)
        + b"\x01id\0" + struct.pack("!Ii", 2950, -1) + b"\x00workspace_id\0" + struct.pack("!Ii", 2950, -1)
    )  # fmt: skip
    parsed = decoder.parse(relation)
    assert isinstance(parsed, Relation) and parsed.name == "issues" and [c.key for c in parsed.columns] == [True, False]
    row = struct.pack("!H", 2) + b"t" + struct.pack("!I", 3) + b"abc" + b"n"
    insert = decoder.parse(b"I" + struct.pack("!I", 16400) + b"N" + row)
    assert insert == Change("insert", 16400, {"id": "abc", "workspace_id": None})
    key = struct.pack("!H", 2) + b"t" + struct.pack("!I", 1) + b"k" + b"n"
    delete = decoder.parse(b"D" + struct.pack("!I", 16400) + b"K" + key)
    assert delete.op == "delete" and delete.key_only and delete.row["id"] == "k"
    updated = decoder.parse(b"U" + struct.pack("!I", 16400) + b"O" + key + b"N" + row)
    assert updated.old == {"id": "k", "workspace_id": None} and not updated.key_only and updated.row["id"] == "abc"
    assert isinstance(decoder.parse(b"B" + struct.pack("!QqI", 10, 0, 7)), Begin)
    commit = decoder.parse(b"C\0" + struct.pack("!QQq", 10, 20, 1_000_000))
    assert isinstance(commit, Commit) and commit.end_lsn == 20 and commit.commit_time.year == 2000
    truncate = decoder.parse(b"T" + struct.pack("!IB", 1, 1) + struct.pack("!I", 16400))
    assert truncate == Truncate((16400,), True, False)


# ---------------------------------------------------------------------- set-up
def test_setup_limits_the_publication_to_watched_tables_and_gives_link_tables_full_identity(world) -> None:
    settings = world["settings"]
    assert setup(settings).statements, "created"
    again = plan(settings)
    assert again.statements == [] and again.slot_exists, "a second set-up has nothing to do"
    with psycopg2.connect(replication_url(settings)) as connection, connection.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_publication_tables WHERE pubname = %s", (settings.PI_CHANGEFEED_PUBLICATION,))
        published = {name for (name,) in cur.fetchall()}
        cur.execute(
            "SELECT relname, relreplident FROM pg_class WHERE relname IN ('issues', 'project_pages', 'pages', 'projects')"
        )
        identity = dict(cur.fetchall())
    assert {"issues", "pages", "project_pages", "projects", "states"} <= published
    assert "users" not in published and "workspace_members" not in published
    assert identity["project_pages"] == "f" and identity["projects"] == "f", "their deletes must carry workspace_id"
    assert identity["issues"] == "d" and identity["pages"] == "d", "document tables: a delete maps through the ledger"


def test_setup_without_rights_prints_the_sql_and_exits_non_zero(world, tmp_path) -> None:
    plane = world["plane"]
    role = f"ro_{uuid.uuid4().hex[:8]}"
    with plane.engine.begin() as connection:
        connection.execute(text(f"CREATE ROLE {role} LOGIN"))
        connection.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
    try:
        url = replication_url_of(plane.url).replace("postgres@", f"{role}@")
        env = {**os.environ, "PLANE_DATABASE_URL": url, "PI_CHANGEFEED_SLOT": world["settings"].PI_CHANGEFEED_SLOT}
        env["PI_CHANGEFEED_PUBLICATION"] = world["settings"].PI_CHANGEFEED_PUBLICATION
        done = subprocess.run(
            [sys.executable, "-m", "pi_framework.cli", "changefeed", "setup"], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 1, done.stderr
        assert f'ALTER ROLE "{role}" WITH REPLICATION;' in done.stdout
        assert f'CREATE PUBLICATION "{world["settings"].PI_CHANGEFEED_PUBLICATION}" FOR TABLE' in done.stdout
        assert "pg_create_logical_replication_slot" in done.stdout and "polling" in done.stderr
    finally:
        with plane.engine.begin() as connection:
            connection.execute(text(f"DROP OWNED BY {role}"))
            connection.execute(text(f"DROP ROLE {role}"))


# ---------------------------------------------------------------------- Plane's paths that leave updated_at alone
def test_bulk_archive_without_updated_at_leaves_search(world, feed) -> None:
    ws, plane, gone = world["ws"], world["plane"], ids(world["issues"][:3])
    bulk(plane, "UPDATE issues SET archived_at = current_date WHERE id = ANY(CAST(:ids AS uuid[]))", ids=gone)
    documents = {f"issues:{issue}" for issue in gone}
    applied(ws, lambda: not documents & visible(ws), message="archived items leave search")
    assert len(visible(ws) & {f"issues:{issue['id']}" for issue in world["issues"]}) == 3


def test_polling_alone_misses_a_bulk_soft_delete_the_feed_resumes_from_the_slot(world) -> None:
    ws, plane, gone = world["ws"], world["plane"], ids(world["issues"][:2])
    setup(world["settings"])  # the slot exists; no consumer runs yet
    bulk(plane, "UPDATE issues SET deleted_at = now() WHERE id = ANY(CAST(:ids AS uuid[]))", ids=gone)
    live_sync(ws)
    documents = {f"issues:{issue}" for issue in gone}
    assert documents <= visible(ws), "updated_at did not move: the cursor cannot see it (the gap of issue 21)"
    with Feed(world["settings"]):  # started after the change: the slot kept it
        applied(ws, lambda: not documents & visible(ws), message="soft-deleted items leave search")
    assert not documents & ledger(ws)


def test_bulk_state_change_into_triage_and_back(world, feed) -> None:
    ws, plane, issue = world["ws"], world["plane"], world["issues"][4]
    document = f"issues:{issue['id']}"
    with plane.engine.connect() as connection:
        before = connection.execute(select(schema.issues.c.state_id).where(schema.issues.c.id == issue["id"])).scalar_one()
    bulk(
        plane,
        "UPDATE issues SET state_id = :state, priority = 'high' WHERE id = :id",
        state=world["triage"]["id"],
        id=issue["id"],
    )
    applied(ws, lambda: document not in visible(ws), message="a triaged item leaves search")
    bulk(plane, "UPDATE issues SET state_id = :state WHERE id = :id", state=before, id=issue["id"])
    applied(ws, lambda: document in visible(ws), message="back from triage, searchable again")


def test_a_deleted_project_pages_row_takes_the_page_out_of_search(world, feed) -> None:
    ws, plane, page = world["ws"], world["plane"], world["page"]
    document = f"pages:{page['id']}"
    assert document in visible(ws, "zebra")
    bulk(plane, "DELETE FROM project_pages WHERE page_id = :id", id=page["id"])  # the page's only project link
    applied(ws, lambda: document not in visible(ws, "zebra"), message="a page without a live project leaves search")


def test_a_hard_delete_maps_through_the_ledger(world, feed) -> None:
    ws, plane, issue = world["ws"], world["plane"], world["issues"][5]
    document = f"issues:{issue['id']}"
    plane.hard_delete(schema.issues, issue["id"])  # the DELETE carries only the key
    applied(ws, lambda: document not in visible(ws), message="a hard-deleted item leaves search")
    assert document not in ledger(ws)


def test_a_late_commit_is_found(world, feed) -> None:
    """A transaction stamps updated_at 200 s before it commits (beyond PI_SYNC_OVERLAP_SECONDS): polling misses it."""
    ws, plane, issue = world["ws"], world["plane"], world["issues"][1]
    stamp = utcnow() - timedelta(seconds=200)
    plane.update(schema.issues, issue["id"], name="Renamed by a slow transaction quokka", updated_at=stamp)
    applied(ws, lambda: f"issues:{issue['id']}" in visible(ws, "quokka"), message="the late commit is searchable")


def test_truncate_compares_every_live_workspace(world, feed) -> None:
    ws, plane = world["ws"], world["plane"]
    with plane.engine.begin() as connection:
        connection.execute(text("TRUNCATE project_pages"))
    applied(ws, lambda: f"pages:{world['page']['id']}" not in visible(ws, "zebra"), message="truncated links leave search")


def test_an_idle_feed_keeps_confirming_while_unwatched_tables_churn(world, feed) -> None:
    settings, plane = world["settings"], world["plane"]
    start = slot_info(settings).confirmed_lsn
    for n in range(20):
        plane.update(schema.users, plane.user()["id"], display_name=f"churn {n}")  # users are not published
    with plane.engine.connect() as connection:
        head = connection.execute(text("SELECT pg_current_wal_lsn()::text")).scalar_one()

    def caught_up() -> bool:
        with plane.engine.connect() as connection:
            return connection.execute(
                text("SELECT confirmed_flush_lsn >= CAST(:head AS pg_lsn) FROM pg_replication_slots WHERE slot_name = :slot"),
                {"head": head, "slot": settings.PI_CHANGEFEED_SLOT},
            ).scalar_one()

    wait_for(caught_up, 15, message=f"the slot confirmed past {head} (was {start})")
    assert compare_requests.compare_requests() == set(), "nothing watched changed: nothing flagged"


def plane_now(plane) -> datetime:  # noqa: ANN001 - a PlaneFactory
    """Plane's clock (a connection per call, returned to the pool: a polling loop must not exhaust it)."""
    with plane.engine.connect() as connection:
        return connection.execute(text("SELECT now()")).scalar_one()


def test_an_ordinary_edit_needs_no_compare_but_a_bulk_update_right_after_it_does(world, pi_env) -> None:
    """A new updated_at is seen by the cursors: flag only (no compare). The same row updated again without touching
    updated_at (a bulk path, a second later) carries a stamp the cursor may already have seen: compared."""
    ws, plane = world["ws"], world["plane"]
    # half the overlap (3 s) is both the feed's warm-up and the slack an ordinary edit's stamp may lag its commit by:
    # wide enough for a loaded machine
    settings = pi_env(PI_SYNC_OVERLAP_SECONDS=6)
    setup(settings)
    with Feed(settings):
        first = plane.update(schema.issues, world["issues"][0]["id"], name="Warm-up edit")["updated_at"]
        wait_for(lambda: compare_requests.compare_requested(ws), 15, message="the first change (before the feed knows stamps)")
        live_sync(ws)
        wait_for(lambda: plane_now(plane) > first + timedelta(seconds=3.5), 15, message="the warm-up edit's stamp behind")
        issue = world["issues"][2]
        plane.update(schema.issues, issue["id"], name="Ordinary edit wombat")
        wait_for(lambda: state.marker(ws), 15, message="the edit is flagged")
        assert compare_requests.compare_requested(ws) is None, "a new updated_at: the cursor sees it, no compare"
        result = live_sync(ws)
        assert "reconcile_deleted" not in result and f"issues:{issue['id']}" in visible(ws, "wombat")
        bulk(plane, "UPDATE issues SET state_id = :state WHERE id = :id", state=world["triage"]["id"], id=issue["id"])
        applied(ws, lambda: f"issues:{issue['id']}" not in visible(ws, "wombat"), message="the bulk triage right after the edit")


# ---------------------------------------------------------------------- the slot
def test_a_slot_dropped_under_a_running_consumer_is_recreated_with_a_full_compare(world, feed) -> None:
    ws, plane, settings = world["ws"], world["plane"], world["settings"]
    drop(plane.url, settings.PI_CHANGEFEED_SLOT)  # a DBA (or a failover) removes it under the consumer
    wait_for(lambda: compare_requests.compare_requested(ws), 20, message="every live workspace gets a full compare")
    assert "recreated" in state.marker(ws)[0]["path"]
    live_sync(ws)
    issue = world["issues"][0]
    bulk(plane, "UPDATE issues SET archived_at = current_date WHERE id = :id", id=issue["id"])
    applied(ws, lambda: f"issues:{issue['id']}" not in visible(ws), message="the recreated slot feeds again")


def test_a_slot_past_the_lag_limit_is_dropped_and_every_workspace_compared(world, pi_env) -> None:
    ws, plane = world["ws"], world["plane"]
    setup(world["settings"])  # no consumer: the slot falls behind
    for n in range(30):
        plane.update(schema.users, plane.user()["id"], display_name=f"churn {n}")
    settings = pi_env(PI_CHANGEFEED_MAX_LAG_BYTES=1024)
    state.remove(state.PENDING, ws)
    info = check_lag(settings)
    assert info.lag_bytes > 1024
    assert not slot_info(settings).exists, "dropped"
    status = requests.load_status()[settings.PI_CHANGEFEED_SLOT]
    assert status["mode"] == "polling" and "slot dropped" in status["reason"]
    assert compare_requests.compare_requested(ws) is not None and state.marker(ws) is not None


def test_the_feed_says_why_it_is_off(world, pi_env) -> None:
    from pi_framework.changefeed.feed import availability
    from pi_framework.changefeed.plugin import describe, report

    assert availability(world["settings"]) == "not set up (run pi changefeed setup)"
    settings = pi_env(PLANE_DATABASE_URL=f"sqlite:///{world['settings'].PI_DATA_DIR}/plane.sqlite")
    assert "not PostgreSQL" in availability(settings)
    line = describe(report(settings))
    assert "polling" in line and "not PostgreSQL" in line
    Runner(settings).say(availability(settings))  # what a worker logs once at start-up, and records for pi status
    from click.testing import CliRunner

    from pi_framework.cli import build_cli

    shown = CliRunner().invoke(build_cli(), ["status"])
    assert shown.exit_code == 0, shown.output
    assert f"change feed {settings.PI_CHANGEFEED_SLOT}: polling (Plane's database is not PostgreSQL)" in shown.output
    assert "changes are found by polling updated_at" in shown.output


def test_a_lost_connection_resumes_from_the_slot(world, feed) -> None:
    """What a PostgreSQL restart does to the consumer: its connection ends; it reconnects and resumes from the slot."""
    ws, plane, settings = world["ws"], world["plane"], world["settings"]
    first = slot_info(settings).active_pid
    with plane.engine.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    issue = world["issues"][3]
    bulk(plane, "UPDATE issues SET deleted_at = now() WHERE id = :id", id=issue["id"])  # while the consumer is away
    wait_for(lambda: slot_info(settings).active_pid not in (None, first), 20, message="the consumer reconnected")
    applied(ws, lambda: f"issues:{issue['id']}" not in visible(ws), message="the change made while away is applied")


# ---------------------------------------------------------------------- crashes and restarts
def consumer_process(settings, tmp_path, **env):  # noqa: ANN001, ANN003
    environment = {
        **os.environ,
        "PI_DATA_DIR": str(settings.PI_DATA_DIR),
        "PLANE_DATABASE_URL": settings.PLANE_DATABASE_URL,
        "PI_CHANGEFEED_SLOT": settings.PI_CHANGEFEED_SLOT,
        "PI_CHANGEFEED_PUBLICATION": settings.PI_CHANGEFEED_PUBLICATION,
        "PI_LEASE_SECONDS": "3",
        "PI_EMBEDDER": "hashing",
        **{name: str(value) for name, value in env.items()},
    }
    log = open(tmp_path / f"consumer-{uuid.uuid4().hex[:6]}.log", "wb")  # noqa: SIM115 - the process owns it
    return subprocess.Popen(
        [sys.executable, "-m", "pi_framework.cli", "changefeed", "run"], env=environment, stdout=log, stderr=log
    )


def test_a_consumer_killed_before_confirming_loses_nothing(world, tmp_path) -> None:
    ws, plane, settings = world["ws"], world["plane"], world["settings"]
    setup(settings)
    # a consumer that receives changes but would flag them only after an hour: kill -9 it in between
    slow = consumer_process(settings, tmp_path, PI_CHANGEFEED_BATCH_SECONDS=3600)
    try:
        wait_for(lambda: slot_info(settings).active_pid, 30, message="the consumer streams")
        issue = world["issues"][2]
        bulk(plane, "UPDATE issues SET archived_at = current_date WHERE id = :id", id=issue["id"])
        with plane.engine.connect() as connection:
            head = connection.execute(text("SELECT pg_current_wal_lsn()::text")).scalar_one()

        def sent() -> bool:  # the walsender sent the change: the consumer holds it, unconfirmed
            with plane.engine.connect() as connection:
                return connection.execute(
                    text(
                        "SELECT r.sent_lsn >= CAST(:head AS pg_lsn) FROM pg_stat_replication r "
                        "JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name = :slot"
                    ),
                    {"head": head, "slot": settings.PI_CHANGEFEED_SLOT},
                ).scalar()

        wait_for(sent, 15, message="the change reached the consumer")
        os.kill(slow.pid, signal.SIGKILL)
        slow.wait(10)
    finally:
        if slow.poll() is None:
            slow.kill()
    assert compare_requests.compare_requested(ws) is None, "killed before it flagged anything"
    with plane.engine.connect() as connection:
        confirmed = connection.execute(
            text("SELECT confirmed_flush_lsn < CAST(:head AS pg_lsn) FROM pg_replication_slots WHERE slot_name = :slot"),
            {"head": head, "slot": settings.PI_CHANGEFEED_SLOT},
        ).scalar_one()
    assert confirmed, "nothing past the change was confirmed"
    restarted = consumer_process(settings, tmp_path)
    try:
        document = f"issues:{issue['id']}"
        applied(ws, lambda: document not in visible(ws), timeout=30, message="the restarted consumer replays the change")
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(15)


def test_archived_items_leave_search_through_a_real_worker(world, tmp_path, rabbitmq_url) -> None:
    """The whole path: Plane's bulk archive -> the feed thread of a real worker (RabbitMQ) -> a live sync it dispatched
    at once (the tick is an hour away) -> gone from search."""
    from pi_framework.worker_process import WorkerProcess

    ws, plane, settings = world["ws"], world["plane"], world["settings"]
    setup(settings)
    env = {
        "PI_DATA_DIR": str(settings.PI_DATA_DIR),
        "PLANE_DATABASE_URL": settings.PLANE_DATABASE_URL,
        "PI_CHANGEFEED_SLOT": settings.PI_CHANGEFEED_SLOT,
        "PI_CHANGEFEED_PUBLICATION": settings.PI_CHANGEFEED_PUBLICATION,
        "PI_EMBEDDER": "hashing",
        "PI_CHUNK_TOKENS": "24",
        "PI_CHUNK_OVERLAP": "0",
        "CELERY_BROKER_URL": rabbitmq_url,
        "CELERY_DEFAULT_QUEUE": f"pi_test_{uuid.uuid4().hex}",
        "CELERY_VECTOR_SYNC_INTERVAL": "3600",
    }
    worker = WorkerProcess(env, tmp_path / "worker.log", concurrency=1, pool="solo")
    try:
        worker.wait_ready()
        wait_for(lambda: slot_info(settings).active_pid, 30, message=f"the worker's feed streams\n{worker.log()}")
        gone = ids(world["issues"][:4])
        bulk(plane, "UPDATE issues SET archived_at = current_date WHERE id = ANY(CAST(:ids AS uuid[]))", ids=gone)
        documents = {f"issues:{issue}" for issue in gone}
        wait_for(lambda: not documents & ledger(ws), 45, message=f"archived items leave the index\n{worker.log()}")
        assert not documents & visible(ws)
        assert "change feed: on" in worker.log()
    finally:
        worker.stop()


# ---------------------------------------------------------------------- a real PostgreSQL restart (a cluster of its own)
@pytest.fixture
def own_cluster(postgres_admin_url):  # noqa: ARG001 - only where the tests' PostgreSQL runs: the binaries are there
    """A throw-away PostgreSQL cluster of this test (the shared one serves other tests and must not restart)."""
    import glob
    import shutil
    import socket
    import tempfile

    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bindirs:
        pytest.skip("no PostgreSQL binaries under /usr/lib/postgresql")
    bindir = bindirs[-1]
    data = tempfile.mkdtemp(prefix="pi-changefeed-pg-")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    if os.getuid() == 0:
        shutil.chown(data, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = (
        f"-p {port} -h 127.0.0.1 -k {data} -c fsync=off -c wal_level=logical -c max_replication_slots=4 -c max_wal_senders=4"
    )

    def pg_ctl(*args: str) -> None:
        subprocess.run(
            [*as_postgres, f"{bindir}/pg_ctl", "-D", data, "-l", f"{data}/server.log", "-w", "-t", "60", *args],
            check=True,
            capture_output=True,
        )

    subprocess.run(
        [*as_postgres, f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust"], check=True, capture_output=True
    )
    pg_ctl("-o", options, "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", lambda: pg_ctl("-m", "fast", "-o", options, "restart")
    finally:
        subprocess.run([*as_postgres, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def test_a_postgresql_restart_loses_nothing(own_cluster, pi_env) -> None:
    from pi_framework.db import make_engine
    from pi_framework.plane import reset_plane_engine
    from pi_framework.plane.sample import PlaneFactory, load_schema
    from pi_framework.runtime import plane_tables

    url, restart = own_cluster
    engine = make_engine(url, pool_size=2)
    load_schema(engine, list(plane_tables()))
    plane = PlaneFactory(engine, url)
    reset_plane_engine()
    settings = pi_env(PLANE_DATABASE_URL=url, PI_EMBEDDER="hashing", PI_CHUNK_TOKENS=24, PI_CHUNK_OVERLAP=0, PI_LEASE_SECONDS=3)
    workspace = plane.workspace()
    project = plane.project(workspace, identifier="OPS")
    issues = [plane.issue(project, f"Issue about topic{n}") for n in range(3)]
    ws = workspace["id"]
    assert vectorize(ws)["status"] == JobStatus.SUCCESS
    live_sync(ws)
    setup(settings)
    try:
        with Feed(settings):
            engine.dispose()
            restart()  # the consumer's connection ends; the slot survives on disk
            reset_plane_engine()
            bulk(plane, "UPDATE issues SET archived_at = current_date WHERE id = :id", id=issues[0]["id"])
            applied(
                ws, lambda: f"issues:{issues[0]['id']}" not in visible(ws), timeout=30, message="the change after the restart"
            )
            bulk(plane, "UPDATE issues SET deleted_at = now() WHERE id = :id", id=issues[1]["id"])
            applied(ws, lambda: f"issues:{issues[1]['id']}" not in visible(ws), message="and the next one")
    finally:
        engine.dispose()
        reset_plane_engine()
