#!/usr/bin/env bash
# Runs one herald-bench scenario against a fresh release Herald on this machine.
#
#   bench/run.sh idle --connections 10000
#   bench/run.sh fanout --subscribers 1000 --rate 1000 --duration 10
#   bench/run.sh publish --connections 64 --duration 10
#
# The server runs pinned to core 0 on a new SQLite file (synchronous=full, the default), the
# load tool pinned to core 1. Extra server flags go in HERALD_BENCH_SERVER_FLAGS.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --workspace --quiet
# Thousands of sockets on each side: raise the descriptor limit where root may.
ulimit -n 65536 2>/dev/null || true
dir=$(mktemp -d)
port=${HERALD_BENCH_PORT:-18181}
key="$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' | cut -c1-39)0"

# shellcheck disable=SC2086
HERALD_ADMIN_KEY=$key taskset -c 0 target/release/herald serve \
    --listen "127.0.0.1:$port" --database-url "sqlite://$dir/herald.db" \
    --rate-anon 0 --log warn ${HERALD_BENCH_SERVER_FLAGS:-} >/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT

for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/health/live" >/dev/null 2>&1 && break
    sleep 0.1
done

taskset -c 1 target/release/herald-bench --url "http://127.0.0.1:$port" --key "$key" \
    --server-pid "$pid" "$@"
