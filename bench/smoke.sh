#!/usr/bin/env bash
# CI smoke run of herald-bench: every Herald scenario once, at a tiny size, against a real
# Herald (debug build, the one `cargo test` already compiled) on a free loopback port with a
# temporary SQLite file. Fails if a scenario errors, or if fan-out or replay lose, duplicate or
# reorder a message. No timing is asserted: the figures of a debug build on a busy CI machine mean
# nothing.
#
#   bench/smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
cargo build --workspace --bins --quiet
target_dir=${CARGO_TARGET_DIR:-target}
herald=$target_dir/debug/herald
bench=$target_dir/debug/herald-bench

dir=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

key="$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' | cut -c1-39)0"
# Port 0: the kernel picks a free port; Herald logs the one it got.
HERALD_ADMIN_KEY=$key "$herald" serve --listen 127.0.0.1:0 \
    --database-url "sqlite://$dir/herald.db" --rate-anon 0 \
    --log info --log-format json >"$dir/herald.log" 2>&1 &
pid=$!
url=
for _ in $(seq 200); do
    url=$(grep -o 'listening on http://127\.0\.0\.1:[0-9]*' "$dir/herald.log" | head -n1 | cut -d' ' -f3) || true
    [ -n "$url" ] && curl -fs "$url/health/live" >/dev/null 2>&1 && break
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "smoke: herald exited at start:" >&2
        cat "$dir/herald.log" >&2
        exit 1
    fi
    url=
    sleep 0.1
done
if [ -z "$url" ]; then
    echo "smoke: herald did not become live within 20 s:" >&2
    tail -n 20 "$dir/herald.log" >&2
    exit 1
fi
echo "smoke: herald (debug) at $url"

# run NAME ARGS...: one scenario; its JSON line (the last line of its output) goes to $dir/NAME.json.
run() {
    local name=$1
    shift
    echo "== herald-bench $*"
    if ! "$bench" --url "$url" --key "$key" --server-pid "$pid" "$@" >"$dir/$name.out"; then
        cat "$dir/$name.out"
        echo "smoke: scenario $name failed" >&2
        exit 1
    fi
    cat "$dir/$name.out"
    tail -n 1 "$dir/$name.out" >"$dir/$name.json"
}

run publish publish --connections 4 --duration 2
run fanout fanout --subscribers 20 --rate 200 --duration 2
run idle idle --connections 200 --hold 1
run longpoll longpoll --polls 200 --rooms 10 --settle 1
run replay replay --messages 2000

python3 - "$dir" <<'EOF'
import json, sys
d = sys.argv[1]
r = {n: json.load(open(f"{d}/{n}.json")) for n in ["publish", "fanout", "idle", "longpoll", "replay"]}
problems = []
p = r["publish"]
if p["errors"] or not p["accepted"]:
    problems.append(f"publish: {p['accepted']} accepted, {p['errors']} errors")
f = r["fanout"]
if f["lost"] or f["duplicated"] or f["disconnected"] or f["deliveries"] != f["expected"]:
    problems.append(
        f"fanout: {f['deliveries']} of {f['expected']} delivered, {f['lost']} lost, "
        f"{f['duplicated']} duplicated, {f['disconnected']} disconnected"
    )
if f["out_of_order"]:
    problems.append(f"fanout: {f['out_of_order']} messages out of order")
if r["idle"]["connections"] != 200:
    problems.append("idle: wrong connection count")
if r["longpoll"]["failed"]:
    problems.append(f"longpoll: {r['longpoll']['failed']} polls failed")
rp = r["replay"]
if rp["received"] != rp["messages"] or rp["gaps_or_repeats"]:
    problems.append(f"replay: {rp['received']} of {rp['messages']}, {rp['gaps_or_repeats']} gaps or repeats")
for problem in problems:
    print("smoke: FAILED", problem, file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
echo "smoke: all 5 herald-bench scenarios passed ($((SECONDS - started)) s including the build)"
