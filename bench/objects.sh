#!/usr/bin/env bash
# Data-object figures (docs/api.md §10) on a fresh release Herald:
#   1. objects-write, 1 and 64 connections, create and update mode, with change messages (and
#      64 connections without, to show what the message costs); server CPU time per write;
#   2. objects-fanout: 100 WebSocket subscribers of one room, one object updated 1000/s;
#   3. objects-query: OBJECTS objects, then list queries (range + order, equality, order alone,
#      range + count);
#   4. the server stops; objects-explain prints the database's plan of those lists and of the
#      count.
#
#   bench/objects.sh                                 # SQLite (a new file), 1 000 000 objects
#   OBJECTS=20000 DURATION=3 bench/objects.sh        # quicker
#   HERALD_BENCH_PG=postgres://postgres@127.0.0.1:5432/test bench/objects.sh
#
# SQLite: a new file, synchronous=full (the default). PostgreSQL (HERALD_BENCH_PG): a fresh
# schema of that database, dropped at the end; the server's CPU figure then leaves out
# PostgreSQL's own. Herald runs pinned to core 0 and the load tool to core 1, as in run.sh.
# Settings: DURATION (seconds per write and fan-out run, 10), OBJECTS (1000000), QUERIES (per
# query kind, 200), CREATE_CONNECTIONS (64), SUBSCRIBERS (100), RATE (1000), HERALD_BENCH_PORT
# (18181), HERALD_BENCH_SERVER_FLAGS (extra server flags), KEEP_DB=1 (keep the SQLite file).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
OBJECTS=${OBJECTS:-1000000}
QUERIES=${QUERIES:-200}
CREATE_CONNECTIONS=${CREATE_CONNECTIONS:-64}
SUBSCRIBERS=${SUBSCRIBERS:-100}
RATE=${RATE:-1000}
port=${HERALD_BENCH_PORT:-18181}
instance=bench-objects

cargo build --release --workspace --quiet
ulimit -n 65536 2>/dev/null || true
out=target/bench-objects
mkdir -p "$out"
rm -f "$out"/*.out "$out/results.jsonl"
dir=$(mktemp -d)
key="$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' | cut -c1-39)0"
schema=
if [ -n "${HERALD_BENCH_PG:-}" ]; then
    command -v psql >/dev/null || { echo "objects.sh with HERALD_BENCH_PG needs psql on PATH" >&2; exit 1; }
    schema="herald_bench_objects_$(date +%s)"
    psql "$HERALD_BENCH_PG" -qc "CREATE SCHEMA $schema" >/dev/null
    separator='?'; [[ $HERALD_BENCH_PG == *\?* ]] && separator='&'
    db="${HERALD_BENCH_PG}${separator}options=-c%20search_path%3D${schema}"
    backend="PostgreSQL (schema $schema)"
else
    db="sqlite://$dir/herald.db"
    backend="SQLite ($dir/herald.db)"
fi

pid=
stop_server() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=
    fi
}
cleanup() {
    stop_server
    if [ -n "$schema" ]; then
        psql "$HERALD_BENCH_PG" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
    fi
    if [ -n "${KEEP_DB:-}" ] && [ -z "$schema" ]; then
        echo "objects.sh: the SQLite database is kept in $dir/herald.db (instance $instance)"
    else
        rm -rf "$dir"
    fi
}
trap cleanup EXIT

# shellcheck disable=SC2086
HERALD_ADMIN_KEY=$key taskset -c 0 target/release/herald serve \
    --listen "127.0.0.1:$port" --database-url "$db" \
    --rate-anon 0 --log warn ${HERALD_BENCH_SERVER_FLAGS:-} >"$out/herald.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/health/live" >/dev/null 2>&1 && break
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "herald exited at start (see $out/herald.log)" >&2
        exit 1
    fi
    sleep 0.1
done
echo "objects.sh: release Herald on $backend, pinned to core 0; herald-bench on core 1"

# bench NAME ARGS...: one scenario; its output goes to $out/NAME.out, its JSON line to results.jsonl.
bench() {
    local name=$1
    shift
    echo "== $name: herald-bench $*"
    taskset -c 1 target/release/herald-bench --url "http://127.0.0.1:$port" --key "$key" \
        ${pid:+--server-pid "$pid"} "$@" | tee "$out/$name.out"
    tail -n 1 "$out/$name.out" >>"$out/results.jsonl"
}

for mode in create update; do
    for connections in 1 64; do
        bench "write-$mode-$connections" objects-write --mode "$mode" \
            --connections "$connections" --duration "$DURATION"
    done
    bench "write-$mode-64-no-channel" objects-write --mode "$mode" --connections 64 \
        --duration "$DURATION" --no-channel
done
bench fanout objects-fanout --subscribers "$SUBSCRIBERS" --rate "$RATE" --duration "$DURATION"
bench load objects-query --instance "$instance" --objects "$OBJECTS" \
    --connections "$CREATE_CONNECTIONS" --queries 1
# Queries are timed on statistics that know the load, as a running server has them a minute
# later: PostgreSQL's autovacuum analyzes a table that grew (here at once, with ANALYZE), and
# Herald refreshes SQLite's statistics every minute.
if [ -n "$schema" ]; then
    psql "$db" -qc "ANALYZE objects" >/dev/null
else
    echo "objects.sh: waiting 65 s for Herald's statistics refresh"
    sleep 65
fi
bench query objects-query --instance "$instance" --objects "$OBJECTS" --reuse \
    --queries "$QUERIES"

# SQLite: one Herald process per file, so the plan is read once the server has stopped.
stop_server
bench explain objects-explain --database-url "$db" --instance "$instance"

echo "objects.sh: results in $out/ (results.jsonl: one JSON line per run; NAME.out: each run's report; herald.log)"
