#!/usr/bin/env bash
# Install (when missing) and start the services the test suite needs, each on 127.0.0.1, then print the
# environment variables that point the tests at them (`eval "$(tests/support/services.sh)"`).
#
#   PostgreSQL  a throw-away cluster of the tests' own (trust auth, port $PI_TEST_POSTGRES_PORT, data under
#               $PI_SERVICES_DIR/postgres), the way pytest-postgresql does it; from Debian's packages if missing;
#               wal_level=logical (the change feed), a running cluster without it is restarted
#   RabbitMQ    the Debian package's server, started detached; guest/guest on localhost
#   OpenSearch  an embedded node with the k-NN plugin built from Maven artifacts (tests/support/opensearch)
#
# Installing needs root (apt-get); without root a missing package is one clear message naming it.
# Everything this script prints on stdout is `export NAME=value`; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/../.."

SERVICES_DIR="${PI_SERVICES_DIR:-$PWD/.services}"
PG_PORT="${PI_TEST_POSTGRES_PORT:-55432}"
mkdir -p "$SERVICES_DIR"

say() { echo "services: $*" >&2; }

wait_until() {  # wait_until SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq 1 "$seconds"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    say "$what did not come up within ${seconds}s"
    return 1
}

APT_UPDATED=0
apt_install() {  # apt_install PACKAGE... (root only)
    if [ "$(id -u)" != 0 ]; then
        say "missing: $*; install them (as root: apt-get install -y $*) or set PI_TEST_POSTGRES_URL / PI_TEST_RABBITMQ_URL"
        exit 1
    fi
    if [ "$APT_UPDATED" = 0 ]; then
        say "apt-get update"
        apt-get update -qq >"$SERVICES_DIR/apt.log" 2>&1 || { cat "$SERVICES_DIR/apt.log" >&2; exit 1; }
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    # policy-rc.d 101: the package must not start its own service (we start ours, on our terms)
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >"$SERVICES_DIR/apt.log" 2>&1; then
        cat "$SERVICES_DIR/apt.log" >&2
        rm -f /usr/sbin/policy-rc.d
        exit 1
    fi
    rm -f /usr/sbin/policy-rc.d
}

pg_bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    if [ -n "$dir" ] && [ -x "$dir/postgres" ]; then echo "$dir"; fi
}

as_pg_user() {  # PostgreSQL refuses to run as root: run its programs as the postgres account then
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
    if [ -n "${PI_TEST_POSTGRES_URL:-}" ]; then return 0; fi
    local bindir data="$SERVICES_DIR/postgres"
    bindir=$(pg_bindir)
    if [ -z "$bindir" ]; then
        apt_install postgresql
        bindir=$(pg_bindir)
    fi
    # wal_level=logical and the senders/slots: the change feed's tests (logical replication, pgoutput)
    local options="-p $PG_PORT -h 127.0.0.1 -k $data -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    options="$options -c max_connections=300 -c wal_level=logical -c max_replication_slots=64 -c max_wal_senders=64"
    if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" \
        && [ "$("$bindir/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atc 'show wal_level' 2>/dev/null)" != logical ]; then
        # a cluster started by an earlier version of this script: wal_level is read only at start-up
        say "PostgreSQL on 127.0.0.1:$PG_PORT: restarting with wal_level=logical"
        as_pg_user "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 -m fast -o "$options" restart >/dev/null
        wait_until 60 PostgreSQL "$bindir/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"
    fi
    if ! "$bindir/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
        if [ ! -f "$data/PG_VERSION" ]; then
            say "initdb $data"
            mkdir -p "$data"
            if [ "$(id -u)" = 0 ]; then chown postgres: "$data" "$SERVICES_DIR"; fi
            as_pg_user "$bindir/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
        fi
        # replication connections (the change feed) over TCP, trusted like every other test connection
        if ! grep -Eq '^host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$data/pg_hba.conf"; then
            echo "host    replication     all             127.0.0.1/32            trust" >>"$data/pg_hba.conf"
        fi
        say "PostgreSQL on 127.0.0.1:$PG_PORT"
        as_pg_user "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 -o "$options" start >/dev/null
        wait_until 60 PostgreSQL "$bindir/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"
    fi
    echo "export PI_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
}

start_rabbitmq() {
    if [ -n "${PI_TEST_RABBITMQ_URL:-}" ]; then return 0; fi
    if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
        apt_install rabbitmq-server
    fi
    export PATH="$PATH:/usr/sbin"
    if ! rabbitmqctl -q status >/dev/null 2>&1; then
        say "RabbitMQ on 127.0.0.1:5672"
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 rabbitmq-server -detached >&2
        wait_until 120 RabbitMQ rabbitmqctl -q status
        wait_until 60 "RabbitMQ's AMQP port" bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672'
    fi
    echo "export PI_TEST_RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672//"
}

start_opensearch() {
    if [ -n "${PI_TEST_OPENSEARCH_URL:-}" ]; then return 0; fi
    if [ -x tests/support/opensearch/start.sh ]; then
        tests/support/opensearch/start.sh "$SERVICES_DIR/opensearch"
    fi
}

start_postgres
start_rabbitmq
start_opensearch
