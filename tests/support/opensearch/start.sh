#!/usr/bin/env bash
# Start (or reuse) the test suite's embedded OpenSearch node with the k-NN plugin; see README.md.
#
#   tests/support/opensearch/start.sh DIR
#
# DIR holds everything: lib/ (jars from Maven, fetched once per pom.xml hash), classes/ (Launcher.java
# compiled, once per its hash), home/ (the node's home and data, wiped on every fresh start), node.log,
# node.pid. A node that an earlier run started from this DIR and that still answers on PORT is reused.
# On success the only line on stdout is
#   export PI_TEST_OPENSEARCH_URL=http://127.0.0.1:PORT
# Progress goes to stderr. Environment: PI_TEST_OPENSEARCH_PORT (default 59200),
# PI_TEST_OPENSEARCH_JAVA (a java binary, default Java 17), PI_TEST_OPENSEARCH_START_TIMEOUT (seconds, 180).
set -euo pipefail

DIR="${1:?usage: $0 DIR}"
HERE="$(cd "$(dirname "$0")" && pwd)"
PORT="${PI_TEST_OPENSEARCH_PORT:-59200}"
DEADLINE="${PI_TEST_OPENSEARCH_START_TIMEOUT:-180}"
URL="http://127.0.0.1:$PORT"

say() { echo "opensearch: $*" >&2; }
die() { say "$*"; exit 1; }

command -v curl >/dev/null || die "curl is missing (apt-get install -y curl)"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

# One start at a time (two test runs at once share the node). The lock's descriptor is closed for the
# node itself, or the node would hold the lock for its whole life.
exec 9>"$DIR/start.lock"
flock -w "$((DEADLINE + 600))" 9 || die "another start.sh holds $DIR/start.lock"

java_bin() {
    if [ -n "${PI_TEST_OPENSEARCH_JAVA:-}" ]; then
        echo "$PI_TEST_OPENSEARCH_JAVA"
    elif [ -x /usr/lib/jvm/java-17-openjdk-amd64/bin/java ]; then
        echo /usr/lib/jvm/java-17-openjdk-amd64/bin/java   # OpenSearch 2.19 wants 17; JAVA_HOME may be newer
    else
        echo java
    fi
}

healthy() {
    curl -fsS -m 10 "$URL/_cluster/health?wait_for_status=yellow&timeout=5s" >/dev/null 2>&1
}

# The pid in node.pid, if that process is alive and is our launcher for this DIR (not a recycled pid).
our_pid() {
    local pid
    pid="$(cat "$DIR/node.pid" 2>/dev/null || true)"
    if [ -n "$pid" ] && [ -n "$(node_port "$pid")" ]; then echo "$pid"; fi
}
# The HTTP port on the command line of our launcher PID for this DIR (compiled, or launched from source).
node_port() {
    local cmd
    cmd="$({ tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null || true)"
    case "$cmd" in
        *" Launcher $DIR/home "* | *"Launcher.java $DIR/home "*) cmd="${cmd##*"$DIR/home "}"; echo "${cmd%% *}" ;;
    esac
}

stop_node() {  # stop_node PID WHY
    say "stopping node pid $1: $2"
    kill "$1" 2>/dev/null || true
    for _ in $(seq 1 30); do [ -d "/proc/$1" ] || return 0; sleep 1; done
    kill -9 "$1" 2>/dev/null || true
}

print_url() { echo "export PI_TEST_OPENSEARCH_URL=$URL"; }

# 1. A node from an earlier run still up: reuse it.
pid="$(our_pid)"
if [ -n "$pid" ] && [ "$(node_port "$pid")" != "$PORT" ]; then
    stop_node "$pid" "it serves another port than $PORT"
    pid=""
fi
if [ -n "$pid" ]; then
    # give a busy (or, after an interrupted start.sh, still starting) node a minute before giving up on it
    since=$(date +%s)
    while [ -d "/proc/$pid" ] && [ $(( $(date +%s) - since )) -lt 60 ]; do
        if healthy; then
            say "reusing the node on $URL (pid $pid)"
            print_url
            exit 0
        fi
        sleep 1
    done
    stop_node "$pid" "it does not answer on $URL"
fi
rm -f "$DIR/node.pid"
if curl -s -m 5 -o /dev/null "$URL/" 2>/dev/null; then
    die "something that start.sh did not start answers on $URL; stop it or set PI_TEST_OPENSEARCH_PORT"
fi

# 2. Jars, fetched once per pom.xml (its hash is the cache key).
key="$(sha256sum "$HERE/pom.xml" | cut -c1-16)"
if [ "$(cat "$DIR/lib/.key" 2>/dev/null || true)" != "$key" ]; then
    command -v mvn >/dev/null || die "mvn is missing (apt-get install -y maven)"
    say "fetching jars with Maven into $DIR/lib"
    rm -rf "$DIR/lib.tmp"
    if ! mvn -q -B -f "$HERE/pom.xml" \
            dependency:copy-dependencies@jars dependency:unpack-dependencies@knn \
            -Dlib.dir="$DIR/lib.tmp" >"$DIR/maven.log" 2>&1 9>&-; then
        cat "$DIR/maven.log" >&2
        die "Maven could not fetch the jars (see above)"
    fi
    ls "$DIR"/lib.tmp/opensearch-2*.jar "$DIR"/lib.tmp/knn/opensearch-knn-*.jar >/dev/null 2>&1 \
        || die "Maven ran but $DIR/lib.tmp lacks the opensearch or opensearch-knn jar"
    echo "$key" >"$DIR/lib.tmp/.key"
    rm -rf "$DIR/lib"
    mv "$DIR/lib.tmp" "$DIR/lib"
fi

# 3. Launcher.java compiled once per (jars, source): a source-file launch would spend ~2 s compiling it on
#    every start.
JAVA="$(java_bin)"
JAVAC="$(dirname "$JAVA")/javac"
[ -x "$JAVAC" ] || JAVAC=javac
ckey="$key-$(sha256sum "$HERE/Launcher.java" | cut -c1-16)"
if [ "$(cat "$DIR/classes/.key" 2>/dev/null || true)" != "$ckey" ]; then
    rm -rf "$DIR/classes.tmp"
    if ! "$JAVAC" -nowarn -cp "$DIR/lib/*:$DIR/lib/knn/*" -d "$DIR/classes.tmp" "$HERE/Launcher.java" \
            >"$DIR/javac.log" 2>&1 9>&-; then
        cat "$DIR/javac.log" >&2
        die "could not compile $HERE/Launcher.java (see above)"
    fi
    echo "$ckey" >"$DIR/classes.tmp/.key"
    rm -rf "$DIR/classes"
    mv "$DIR/classes.tmp" "$DIR/classes"
fi

# 4. A fresh node: fresh home and data.
rm -rf "$DIR/home"
mkdir -p "$DIR/home/modules" "$DIR/home/plugins" "$DIR/home/config" "$DIR/tmp"
say "starting the node on $URL (log: $DIR/node.log)"
started=$(date +%s)
(
    cd "$DIR"
    exec setsid nohup "$JAVA" -Xms512m -Xmx1g -XX:+UseG1GC -Djava.io.tmpdir="$DIR/tmp" \
        -Dio.netty.tryReflectionSetAccessible=true -Dio.netty.noKeySetOptimization=true \
        -Dio.netty.recycler.maxCapacityPerThread=0 -Dio.netty.allocator.numDirectArenas=0 \
        -cp "$DIR/classes:$DIR/lib/*:$DIR/lib/knn/*" Launcher "$DIR/home" "$PORT" \
        </dev/null >"$DIR/node.log" 2>&1 9>&-
) &
pid=$!
echo "$pid" >"$DIR/node.pid"

# 5. Wait until it serves, within the deadline.
while ! healthy; do
    if ! [ -d "/proc/$pid" ]; then
        tail -n 60 "$DIR/node.log" >&2 || true
        die "the node exited while starting (log above, whole log in $DIR/node.log)"
    fi
    if [ $(( $(date +%s) - started )) -ge "$DEADLINE" ]; then
        tail -n 60 "$DIR/node.log" >&2 || true
        kill "$pid" 2>/dev/null || true
        rm -f "$DIR/node.pid"
        die "the node did not answer on $URL within ${DEADLINE}s (log above)"
    fi
    sleep 0.5
done
# One node can never assign a replica: without this every new index stays yellow. (A cluster-level default
# is read from the cluster state's settings, not the node's, so it is set here, through the API.)
curl -fsS -m 30 -XPUT "$URL/_cluster/settings" -H 'content-type: application/json' \
    -d '{"persistent": {"cluster.default_number_of_replicas": 0}}' >/dev/null \
    || die "could not set cluster.default_number_of_replicas on $URL"
say "node up on $URL after $(( $(date +%s) - started ))s (pid $pid)"
print_url
