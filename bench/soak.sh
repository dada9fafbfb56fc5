#!/usr/bin/env bash
# Soak run (not in CI): N minutes (default 10) of mixed load against a fresh release Herald.
#
#   bench/soak.sh [--minutes N] [herald-bench soak flags...]
#
# Builds release, starts `herald serve` on a new SQLite file pinned to core 0 (herald-bench on
# core 1), with the settings the mix needs: no anonymous rate limit (the subscribers and
# publishers are many requests from one IP), the log-in limits left on (wrong passwords must be
# throttled), a 5 s header timeout for the slowloris sockets, a 10 s send timeout, the access
# log read every 5 s, and unlimited history so that the final check sees every message.
#
# `herald-bench soak` then runs publishers, long-poll / WebSocket / SSE subscribers that drop
# and resume every few seconds, wrong and right log-ins, slowloris sockets and key resets, prints
# a progress line (server RSS, FDs, CPU) every 10 s, and at the end checks every subscriber's ids
# against the history. Exits non-zero if a subscriber lost, repeated or reordered a message, an
# acknowledged publish is missing, or a reset key kept working.
#
# Output, the server log and the JSON summary go to target/bench-soak/<time>/. Extra server flags
# go in HERALD_BENCH_SERVER_FLAGS; the port is HERALD_BENCH_PORT (default 18190).
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=10
bench_args=()
while [ $# -gt 0 ]; do
    case $1 in
        --minutes) minutes=${2:?--minutes takes a number}; shift 2 ;;
        --minutes=*) minutes=${1#*=}; shift ;;
        -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) bench_args+=("$1"); shift ;;
    esac
done
if ! [[ $minutes =~ ^[0-9]+([.][0-9]+)?$ ]] || [ "$(awk "BEGIN{print ($minutes > 0)}")" != 1 ]; then
    echo "soak: --minutes takes a positive number, not '$minutes'" >&2
    exit 2
fi
seconds=$(awk "BEGIN{print $minutes * 60}")

cargo build --release --workspace --quiet
ulimit -n 65536 2>/dev/null || true
out=target/bench-soak/$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
dir=$(mktemp -d)
port=${HERALD_BENCH_PORT:-18190}
url="http://127.0.0.1:$port"
if curl -fs "$url/health/live" >/dev/null 2>&1; then
    echo "soak: something already answers on $url; set HERALD_BENCH_PORT" >&2
    exit 1
fi
key="$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' | cut -c1-39)0"

# shellcheck disable=SC2086
HERALD_ADMIN_KEY=$key taskset -c 0 target/release/herald serve \
    --listen "127.0.0.1:$port" --database-url "sqlite://$dir/herald.db" \
    --rate-anon 0 --header-read-timeout 5s --ws-send-timeout 10s --access-check-interval 5s \
    --history-max-messages 0 --history-max-channel-messages 0 \
    --log warn ${HERALD_BENCH_SERVER_FLAGS:-} >"$out/herald.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 200); do
    curl -fs "$url/health/live" >/dev/null 2>&1 && break
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "soak: herald exited at start:" >&2
        cat "$out/herald.log" >&2
        exit 1
    fi
    sleep 0.1
done
echo "soak: herald (release, pid $pid) at $url for $minutes minutes; output in $out/"

status=0
taskset -c 1 target/release/herald-bench --url "$url" --key "$key" --server-pid "$pid" \
    soak --duration "$seconds" "${bench_args[@]}" 2>&1 | tee "$out/soak.out" || status=$?
tail -n 1 "$out/soak.out" >"$out/soak.json"

if ! kill -0 "$pid" 2>/dev/null; then
    echo "soak: FAILED: herald is no longer running" >&2
    status=1
fi
errors=$(grep -c 'ERROR' "$out/herald.log" || true)
warnings=$(grep -c 'WARN' "$out/herald.log" || true)
echo "soak: server log $out/herald.log: $errors errors, $warnings warnings"
if [ "$((errors + warnings))" -gt 0 ]; then
    grep -E 'ERROR|WARN' "$out/herald.log" | head -n 10
fi
exit "$status"
