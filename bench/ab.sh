#!/usr/bin/env bash
# A/B run (not in CI): one herald-bench scenario against two Herald binaries, rounds alternating,
# so that both see the same machine. For each run: the scenario's figures and the server's CPU
# time (user + system, from /proc) per published message, which a busy machine disturbs far
# less than throughput.
#
#   bench/ab.sh OLD_HERALD NEW_HERALD [ROUNDS] -- <herald-bench scenario and flags>
#   e.g. bench/ab.sh /tmp/base/herald target/release/herald 3 -- publish --connections 64 --duration 10
#
# herald-bench is target/release/herald-bench (built here). The server runs on core 0 and the
# load on core 1, as in bench/run.sh. Needs taskset.
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -ge 3 ] || { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
old=$1 new=$2
shift 2
rounds=3
if [ "$1" != "--" ]; then rounds=$1; shift; fi
[ "${1:-}" = "--" ] || { echo "ab: put -- before the scenario" >&2; exit 2; }
shift
for binary in "$old" "$new"; do
    [ -x "$binary" ] || { echo "ab: $binary is not an executable" >&2; exit 2; }
done

cargo build --release -p herald-bench --quiet
ulimit -n 65536 2>/dev/null || true
port=${HERALD_BENCH_PORT:-18183}
ticks=$(getconf CLK_TCK)

# CPU seconds of a process so far: fields 14 and 15 of /proc/<pid>/stat (after the command).
cpu_of() { awk -v t="$ticks" '{ sub(/^.*\) /, ""); print ($12 + $13) / t }' "/proc/$1/stat"; }

pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; true' EXIT

run() {
    local label=$1 binary=$2 dir key before after result
    shift 2
    dir=$(mktemp -d)
    key="$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' | cut -c1-39)0"
    HERALD_ADMIN_KEY=$key taskset -c 0 "$binary" serve --listen "127.0.0.1:$port" \
        --database-url "sqlite://$dir/herald.db" --rate-anon 0 --log warn >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$port/health/live" >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || { echo "ab: $binary exited at start" >&2; exit 1; }
        sleep 0.1
    done
    before=$(cpu_of "$pid")
    result=$(taskset -c 1 target/release/herald-bench --url "http://127.0.0.1:$port" \
        --key "$key" --server-pid "$pid" "$@" | tail -n 1)
    after=$(cpu_of "$pid")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
    rm -rf "$dir"
    python3 - "$label" "$before" "$after" "$result" <<'EOF'
import json, sys
label, before, after, result = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
r = json.loads(result)
published = r.get("published") or r.get("accepted") or 0
cpu = after - before
per = f"{1e6 * cpu / published:.1f} µs CPU per message" if published else "n/a"
print(f"{label}: server CPU {cpu:.2f} s, {per}; {json.dumps({k: v for k, v in r.items() if not isinstance(v, (list, dict))})}")
EOF
}

for round in $(seq "$rounds"); do
    if [ $((round % 2)) = 1 ]; then
        run "round $round old" "$old" "$@"
        run "round $round new" "$new" "$@"
    else
        run "round $round new" "$new" "$@"
        run "round $round old" "$old" "$@"
    fi
done
