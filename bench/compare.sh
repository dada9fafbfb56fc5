#!/usr/bin/env bash
# Herald against Sockudo (a Rust Pusher-protocol server) on this machine, same load, same
# payloads, alternating servers.
#
#   bench/compare.sh                       # 3 rounds, 10 s per publish / fan-out run
#   ROUNDS=1 DURATION=5 bench/compare.sh   # a quicker look
#
# For each round and scenario both servers run once, each started fresh, pinned to core 0
# (`taskset -c 0`), with herald-bench pinned to core 1:
#   publish     64 keep-alive connections publishing 128-byte payloads for DURATION s
#   fanout100   100 WebSocket subscribers, 1 000 messages/s for DURATION s
#   fanout1000  1 000 WebSocket subscribers, 1 000 messages/s for DURATION s
#   idle        10 000 idle WebSocket subscriptions; server memory per connection
# Within a round the server that goes first alternates, so a drift in the machine's load does
# not favour one of them. Each run's JSON line goes to target/bench-compare/results.jsonl (with
# the server, round and scenario), the servers' logs to target/bench-compare/logs/, and a table of
# medians is printed at the end.
#
# Settings (environment):
#   ROUNDS (3), DURATION (10, seconds per publish and fan-out run),
#   PUBLISH_CONNECTIONS (64), IDLE_CONNECTIONS (10000), SCENARIOS (publish fanout100 fanout1000 idle),
#   HERALD_PORT (18181), SOCKUDO_PORT (18282),
#   HERALD_BENCH_CACHE (~/.cache/herald-bench): where Sockudo is installed when missing.
#
# Server settings, chosen to be comparable:
#   Herald:  embedded SQLite on a fresh file, --sqlite-synchronous full (every publish is fsynced
#            before it is acknowledged), no rate limits, log level warn.
#   Sockudo: the local (single-node) adapter, in-memory app manager and cache, one app from
#            SOCKUDO_DEFAULT_APP_* with max connections raised from its default of 100, the rate
#            limiter off, the Prometheus metrics endpoint off (Herald has none), no queue
#            (webhooks) driver, log level warn. Messages are not stored (Sockudo keeps no history
#            by default); every other Sockudo setting is its default, including its per-socket
#            send buffer of 1 000 messages, beyond which it disconnects a slow subscriber.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
PUBLISH_CONNECTIONS=${PUBLISH_CONNECTIONS:-64}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
SCENARIOS=${SCENARIOS:-publish fanout100 fanout1000 idle}
HERALD_PORT=${HERALD_PORT:-18181}
SOCKUDO_PORT=${SOCKUDO_PORT:-18282}
CACHE=${HERALD_BENCH_CACHE:-$HOME/.cache/herald-bench}
SOCKUDO_VERSION=5.2.0

out_dir=$root/target/bench-compare
results=$out_dir/results.jsonl
logs=$out_dir/logs
tmp=$(mktemp -d)
server_pid=

say() { echo "compare: $*" >&2; }
die() {
    say "ERROR: $*"
    exit 1
}

stop_server() {
    [ -n "$server_pid" ] || return 0
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 150); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}
cleanup() {
    stop_server
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

for tool in cargo curl python3 taskset; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
[ "$(nproc)" -ge 2 ] || die "needs 2 cores (server on core 0, load tool on core 1)"

# --- Sockudo, installed once into the cache -------------------------------------------------
sockudo=$CACHE/bin/sockudo
if [ -x "$sockudo" ] && grep -qs "sockudo $SOCKUDO_VERSION " "$CACHE/.crates.toml"; then
    say "Sockudo $SOCKUDO_VERSION: $sockudo"
else
    if ! command -v protoc >/dev/null; then
        say "protoc (needed to build Sockudo) is missing: installing protobuf-compiler with apt-get"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler
    fi
    say "installing Sockudo $SOCKUDO_VERSION into $CACHE (cargo install; ~10 minutes on 2 cores)"
    cargo install sockudo --version "$SOCKUDO_VERSION" --locked --root "$CACHE" \
        || die "cargo install sockudo $SOCKUDO_VERSION failed"
fi

# --- Herald and herald-bench ----------------------------------------------------------------
say "building herald and herald-bench (release)"
cargo build --release --workspace --quiet
target_dir=${CARGO_TARGET_DIR:-$root/target}
herald=$target_dir/release/herald
bench=$target_dir/release/herald-bench

# Thousands of sockets on each side.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_CONNECTIONS + 1000)) ]; then
    die "open-file limit $(ulimit -n) is too low for $IDLE_CONNECTIONS connections (ulimit -n)"
fi

mkdir -p "$out_dir"
rm -rf "$logs"
mkdir -p "$logs"
: >"$results"

app_id=herald-bench
app_key=herald-bench-key
app_secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

# Sockudo's config file: only what the environment cannot say. Field names checked against
# sockudo-core 5.2.0 (options/server.rs, options/runtime.rs).
cat >"$tmp/sockudo.json" <<'EOF'
{
  "rate_limiter": { "enabled": false },
  "metrics": { "enabled": false },
  "queue": { "driver": "none" }
}
EOF

port_answers() {
    local code
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1/" 2>/dev/null) || true
    [ -n "$code" ] && [ "$code" != 000 ]
}

# wait_port PORT LOG: until the server answers HTTP on PORT (30 s), or fails.
wait_port() {
    for _ in $(seq 300); do
        port_answers "$1" && return 0
        if ! kill -0 "$server_pid" 2>/dev/null; then
            tail -n 30 "$2" >&2
            die "the server exited at start (log: $2)"
        fi
        sleep 0.1
    done
    tail -n 30 "$2" >&2
    die "the server did not answer on port $1 within 30 s (log: $2)"
}

herald_key=
start_herald() {
    local log=$1 db=$tmp/herald-$RANDOM.db
    port_answers "$HERALD_PORT" && die "port $HERALD_PORT is already in use (set HERALD_PORT)"
    herald_key="$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' | cut -c1-39)0"
    HERALD_ADMIN_KEY=$herald_key taskset -c 0 "$herald" serve \
        --listen "127.0.0.1:$HERALD_PORT" --database-url "sqlite://$db" \
        --sqlite-synchronous full --rate-anon 0 --shutdown-grace 2s --log warn >"$log" 2>&1 &
    server_pid=$!
    wait_port "$HERALD_PORT" "$log"
}

start_sockudo() {
    local log=$1
    port_answers "$SOCKUDO_PORT" && die "port $SOCKUDO_PORT is already in use (set SOCKUDO_PORT)"
    # From an empty folder: Sockudo also reads ./config/config.{toml,json} when present.
    mkdir -p "$tmp/sockudo-cwd"
    (
        cd "$tmp/sockudo-cwd"
        exec env ADAPTER_DRIVER=local HOST=127.0.0.1 PORT="$SOCKUDO_PORT" \
            SOCKUDO_DEFAULT_APP_ID=$app_id SOCKUDO_DEFAULT_APP_KEY=$app_key \
            SOCKUDO_DEFAULT_APP_SECRET="$app_secret" \
            SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS=1000000 \
            SHUTDOWN_GRACE_PERIOD=2 LOG_COLORS_ENABLED=false \
            RUST_LOG="warn,sockudo::bootstrap::server=info" \
            taskset -c 0 "$sockudo" -c "$tmp/sockudo.json"
    ) >"$log" 2>&1 &
    server_pid=$!
    wait_port "$SOCKUDO_PORT" "$log"
    # Sockudo keeps its defaults when it cannot read the file passed with -c: check that the
    # settings took.
    grep -q "rate limiting disabled" "$log" \
        || die "Sockudo did not take the config file (rate limiter still on?); log: $log"
    grep -q "metrics disabled" "$log" \
        || die "Sockudo did not take the config file (metrics still on?); log: $log"
}

scenario_args() {
    case $1 in
    publish) echo "publish --connections $PUBLISH_CONNECTIONS --duration $DURATION --payload-bytes 128" ;;
    fanout100) echo "fanout --subscribers 100 --rate 1000 --duration $DURATION --payload-bytes 128" ;;
    fanout1000) echo "fanout --subscribers 1000 --rate 1000 --duration $DURATION --payload-bytes 128" ;;
    idle) echo "idle --connections $IDLE_CONNECTIONS" ;;
    *) die "unknown scenario $1 (publish fanout100 fanout1000 idle)" ;;
    esac
}

failures=0
# run_one SERVER SCENARIO ROUND
run_one() {
    local server=$1 scenario=$2 round=$3 log out args
    log=$logs/$server-$scenario-$round.log
    out=$tmp/out
    # shellcheck disable=SC2207
    args=($(scenario_args "$scenario"))
    if [ "$server" = herald ]; then
        start_herald "$log"
        set -- --protocol herald --url "http://127.0.0.1:$HERALD_PORT" --key "$herald_key"
    else
        start_sockudo "$log"
        set -- --protocol pusher --url "http://127.0.0.1:$SOCKUDO_PORT" --app-id "$app_id" \
            --app-key "$app_key" --app-secret "$app_secret"
    fi
    say "round $round/$ROUNDS  $scenario  $server"
    if taskset -c 1 "$bench" "$@" --server-pid "$server_pid" "${args[@]}" >"$out" 2>"$tmp/err"; then
        sed 's/^/    /' "$out" | sed '$d' >&2
        # Sockudo logs each message it drops for a subscriber whose send buffer is full.
        local dropped
        dropped=$(grep -c "Buffer full" "$log" || true)
        if [ "$dropped" -gt 0 ]; then
            say "    the server logged $dropped \"Buffer full\" drops (log: $log)"
        fi
        printf '{"server":"%s","scenario":"%s","round":%d,"server_log_buffer_full":%d,"result":%s}\n' \
            "$server" "$scenario" "$round" "$dropped" "$(tail -n 1 "$out")" >>"$results"
    else
        failures=$((failures + 1))
        sed 's/^/    /' "$out" "$tmp/err" >&2
        say "FAILED: $server $scenario round $round (server log: $log)"
        printf '{"server":"%s","scenario":"%s","round":%d,"error":%s}\n' "$server" "$scenario" \
            "$round" "$(tail -n 3 "$tmp/err" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')" \
            >>"$results"
    fi
    stop_server
}

load_before=$(uptime)
say "load before: $load_before"
for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="herald sockudo"; else order="sockudo herald"; fi
    for scenario in $SCENARIOS; do
        for server in $order; do
            run_one "$server" "$scenario" "$round"
        done
    done
done
load_after=$(uptime)
say "load after:  $load_after"

python3 - "$results" "$load_before" "$load_after" "$ROUNDS" "$DURATION" <<'EOF'
import json, statistics, sys
path, load_before, load_after, rounds, duration = sys.argv[1:]
runs = [json.loads(line) for line in open(path)]

# scenario -> [(label, field, higher is better (None: a count that should be 0), format)]
metrics = {
    "publish": [
        ("publishes/s", "accepted_per_s", True, "{:,.0f}"),
        ("latency p50 ms", "p50_ms", False, "{:.2f}"),
        ("latency p99 ms", "p99_ms", False, "{:.2f}"),
        ("errors", "errors", None, "{:,.0f}"),
        ("connections closed by server", "server_closed_connections", None, "{:,.0f}"),
    ],
    "fanout100": [
        ("deliveries/s", "delivered_per_s", True, "{:,.0f}"),
        ("end-to-end p50 ms", "p50_ms", False, "{:.2f}"),
        ("end-to-end p99 ms", "p99_ms", False, "{:.2f}"),
        ("lost", "lost", None, "{:,.0f}"),
        ("duplicated", "duplicated", None, "{:,.0f}"),
        ("subscribers disconnected", "disconnected", None, "{:,.0f}"),
        ("\"Buffer full\" drops in server log", "server_log_buffer_full", None, "{:,.0f}"),
    ],
    "idle": [
        ("server bytes per connection", "bytes_per_connection", False, "{:,.0f}"),
        ("seconds to open all", "open_seconds", False, "{:.2f}"),
    ],
}
metrics["fanout1000"] = metrics["fanout100"]
titles = {
    "publish": "publish: 64 keep-alive connections, 128-byte payloads",
    "fanout100": "fanout: 100 subscribers, 1 000 msg/s, 128-byte payloads",
    "fanout1000": "fanout: 1 000 subscribers, 1 000 msg/s, 128-byte payloads",
    "idle": "idle: 10 000 WebSocket subscriptions",
}

print()
print(f"Herald vs Sockudo: medians of {rounds} round(s), {duration} s per publish/fan-out run")
print(f"load before: {load_before.strip()}")
print(f"load after:  {load_after.strip()}")
for scenario in dict.fromkeys(r["scenario"] for r in runs):
    print()
    title = titles.get(scenario, scenario)
    if scenario == "publish":
        conns = {r["result"]["connections"] for r in runs if "result" in r and r["scenario"] == scenario}
        title = f"publish: {', '.join(map(str, sorted(conns)))} keep-alive connections, 128-byte payloads"
    if scenario == "idle":
        conns = {r["result"]["connections"] for r in runs if "result" in r and r["scenario"] == scenario}
        title = f"idle: {', '.join(f'{c:,}' for c in sorted(conns))} WebSocket subscriptions"
    print(f"## {title}")
    failed = {s: sum(1 for r in runs if r["scenario"] == scenario and r["server"] == s and "error" in r)
              for s in ("herald", "sockudo")}
    if any(failed.values()):
        print(f"   failed runs: herald {failed['herald']}, sockudo {failed['sockudo']}")
    print(f"| {'metric':<34} | {'Herald':>12} | {'Sockudo':>12} | {'Herald/Sockudo':>14} | better | runs (Herald; Sockudo)")
    print(f"|{'-'*36}|{'-'*14}|{'-'*14}|{'-'*16}|--------|----------------------")
    for label, field, higher, fmt in metrics.get(scenario, []):
        vals = {s: [r[field] if field in r else r["result"][field] for r in runs
                    if r["scenario"] == scenario and r["server"] == s and "result" in r]
                for s in ("herald", "sockudo")}
        if not vals["herald"] or not vals["sockudo"]:
            continue
        med = {s: statistics.median(v) for s, v in vals.items()}
        # Counts (errors, losses) get no ratio: any non-zero count is a finding in itself.
        ratio = f"{med['herald'] / med['sockudo']:.2f}" if med["sockudo"] and higher is not None else "-"
        direction = {True: "higher", False: "lower", None: "0"}[higher]
        each = "; ".join(", ".join(fmt.format(x) for x in vals[s]) for s in ("herald", "sockudo"))
        print(f"| {label:<34} | {fmt.format(med['herald']):>12} | {fmt.format(med['sockudo']):>12} "
              f"| {ratio:>14} | {direction:<6} | {each}")
print()
print(f"raw results: {path}")
EOF

if [ "$failures" -gt 0 ]; then
    die "$failures run(s) failed; see above and $logs"
fi
