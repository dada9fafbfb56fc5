#!/usr/bin/env bash
# Cluster figures: three release Herald nodes on one PostgreSQL and a private Redis.
#
#   bench/cluster.sh            # needs PostgreSQL (HERALD_BENCH_DATABASE_URL) and redis-server
#   REPAIR_ONLY=1 bench/cluster.sh   # only the Redis-restart repair measurement
#
# Prints, with the JSON lines of herald-bench:
#   1. cross-node delivery: 100 WebSocket subscribers on node A, publishes on node B, 1000/s;
#   2. publish throughput, 64 connections: one node, then the same load spread over three;
#   3. gap repair after a Redis restart: a long-poll waits on node A, Redis stops, node B
#      publishes (201: PostgreSQL has it), Redis starts again; the time until the poll answers.
# Each run uses a fresh PostgreSQL schema and its own redis-server (a free port, no disk), so the
# machine's Redis is never touched.
set -euo pipefail
cd "$(dirname "$0")/.."

DATABASE_URL=${HERALD_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
DURATION=${DURATION:-10}
REPAIRS=${REPAIRS:-5}
command -v redis-server >/dev/null || { echo "cluster.sh needs redis-server on PATH" >&2; exit 1; }
command -v psql >/dev/null || { echo "cluster.sh needs psql on PATH" >&2; exit 1; }

cargo build --release --workspace --quiet
ulimit -n 65536 2>/dev/null || true
out=target/bench-cluster
mkdir -p "$out"
schema="herald_bench_$(date +%s)"
redis_port=${REDIS_PORT:-16399}
key="$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' | cut -c1-39)0"
pids=()

cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -n "${redis_pid:-}" ] && kill "$redis_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    psql "$DATABASE_URL" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
}
trap cleanup EXIT

start_redis() {
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no >"$out/redis.log" 2>&1 &
    redis_pid=$!
    for _ in $(seq 50); do
        redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "redis-server did not start (see $out/redis.log)" >&2
    exit 1
}

psql "$DATABASE_URL" -qc "CREATE SCHEMA $schema" >/dev/null
separator='?'; [[ $DATABASE_URL == *\?* ]] && separator='&'
node_db="${DATABASE_URL}${separator}options=-c%20search_path%3D${schema}"
start_redis

# Node n listens on 1828n; the first creates the account, the others find it. A long poll
# timeout pushes the storage safety net (poll_timeout / 10) out of the repair measurement.
start_node() {
    local n=$1
    HERALD_ADMIN_KEY=$key target/release/herald serve --listen "127.0.0.1:1828$n" \
        --database-url "$node_db" --redis-url "redis://127.0.0.1:$redis_port" \
        --redis-prefix "$schema" --rate-anon 0 --poll-timeout 3600s --log warn \
        >"$out/node$n.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:1828$n/health/live" >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "node $n did not start (see $out/node$n.log)" >&2
    exit 1
}
for n in 1 2 3; do start_node "$n"; done
bench=(target/release/herald-bench --key "$key")

if [ -z "${REPAIR_ONLY:-}" ]; then
echo "== 1. cross-node delivery: 100 subscribers on node 1, publishes on node 2, 1000/s"
"${bench[@]}" --url http://127.0.0.1:18281 --publish-url http://127.0.0.1:18282 \
    fanout --subscribers 100 --rate 1000 --duration "$DURATION"

echo "== 2a. publish, 64 connections, one node"
"${bench[@]}" --url http://127.0.0.1:18281 publish --connections 64 --duration "$DURATION"
echo "== 2b. publish, 64 connections spread over three nodes"
"${bench[@]}" --url http://127.0.0.1:18281 \
    --publish-url http://127.0.0.1:18281,http://127.0.0.1:18282,http://127.0.0.1:18283 \
    publish --connections 64 --duration "$DURATION"
fi

echo "== 3. gap repair after a Redis restart ($REPAIRS times)"
post() { curl -fs -H "X-API-KEY: $key" -H 'Content-Type: application/json' -d "$2" "$1"; }
base=http://127.0.0.1:18281/v1.1/instances/repair
post http://127.0.0.1:18281/v1.1/instances/ '{"name":"repair"}' >/dev/null
post "$base/channels/" '{"name":"gap","type":"separate_rooms","custom_publish":true}' >/dev/null
for round in $(seq "$REPAIRS"); do
    marker="$out/poll.done"
    rm -f "$marker"
    # The poll waits on node 1 for the next message of the room.
    ( curl -fs -H "X-API-KEY: $key" "$base/channels/gap/poll/?room=r$round" >/dev/null
      date +%s%N >"$marker" ) &
    poller=$!
    sleep 0.5
    kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true
    post "http://127.0.0.1:18282/v1.1/instances/repair/channels/gap/publish/" \
        "{\"room\":\"r$round\",\"payload\":{\"round\":$round}}" >/dev/null
    sleep 1
    [ -f "$marker" ] && { echo "the poll was answered while Redis was down" >&2; exit 1; }
    started=$(date +%s%N)
    start_redis
    wait "$poller"
    done_at=$(cat "$marker")
    ms=$(( (done_at - started) / 1000000 ))
    echo "repair round $round: delivered ${ms} ms after Redis came back"
    echo "{\"scenario\":\"cluster-repair\",\"round\":$round,\"repair_ms\":$ms}" >>"$out/results.jsonl"
done
