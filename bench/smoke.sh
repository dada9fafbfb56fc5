#!/usr/bin/env bash
# CI smoke run of herald-bench: every Herald scenario once, at a tiny size, against a real
# Herald (debug build, the one `cargo test` already compiled) on a free loopback port with a
# temporary SQLite file; then, the server stopped, objects-explain on that file. Fails if a
# scenario errors, if fan-out (of messages or of data-object changes) or replay lose, duplicate or
# reorder a message, or if a list query returns objects that do not match it. No timing is
# asserted: the figures of a debug build on a busy CI machine mean nothing.
#
#   bench/smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/common/start_herald.sh
. tests/common/start_herald.sh

started=$SECONDS
cargo build --workspace --bins --quiet
target_dir=${CARGO_TARGET_DIR:-target}
herald=$target_dir/debug/herald
bench=$target_dir/debug/herald-bench

herald_scratch
# Port 0: the kernel picks a free port; Herald logs the one it got.
HERALD_ADMIN_KEY=$key start_herald smoke "$dir/herald.log" "$herald" \
    --database-url "sqlite://$dir/herald.db" --rate-anon 0 --log info --log-format json
echo "smoke: herald (debug) at $url"

# run NAME ARGS...: one scenario; its JSON line (the last line of its output) goes to $dir/NAME.json.
run() {
    local name=$1
    shift
    echo "== herald-bench $*"
    if ! "$bench" --url "$url" --key "$key" ${pid:+--server-pid "$pid"} "$@" >"$dir/$name.out"; then
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
run objects_create objects-write --mode create --connections 4 --duration 2
run objects_update objects-write --mode update --connections 4 --duration 1
run objects_fanout objects-fanout --subscribers 5 --rate 100 --duration 2
run objects_query objects-query --objects 300 --connections 4 --queries 5 --instance smoke-objects

# SQLite allows one Herald process per file: the plan is read once the server has stopped.
kill "$pid"
wait "$pid" 2>/dev/null || true
pid=
run objects_explain objects-explain --database-url "sqlite://$dir/herald.db" --instance smoke-objects

python3 - "$dir" <<'EOF'
import json, sys
d = sys.argv[1]
names = ["publish", "fanout", "idle", "longpoll", "replay", "objects_create", "objects_update",
         "objects_fanout", "objects_query", "objects_explain"]
r = {n: json.load(open(f"{d}/{n}.json")) for n in names}
problems = []
p = r["publish"]
if p["errors"] or not p["accepted"]:
    problems.append(f"publish: {p['accepted']} accepted, {p['errors']} errors")
for name in ["fanout", "objects_fanout"]:
    f = r[name]
    if f["lost"] or f["duplicated"] or f["disconnected"] or f["deliveries"] != f["expected"]:
        problems.append(
            f"{name}: {f['deliveries']} of {f['expected']} delivered, {f['lost']} lost, "
            f"{f['duplicated']} duplicated, {f['disconnected']} disconnected"
        )
    if f["out_of_order"]:
        problems.append(f"{name}: {f['out_of_order']} messages out of order")
for name in ["objects_create", "objects_update"]:
    w = r[name]
    if w["errors"] or not w["writes"]:
        problems.append(f"{name}: {w['writes']} writes, {w['errors']} errors")
q = r["objects_query"]
if q["errors"] or q["objects"] != 300:
    problems.append(f"objects_query: {q['errors']} errors (wrong answers), {q['objects']} objects")
plans = r["objects_explain"]["plans"]
if sorted(plans) != ["order_n", "range_desc", "range_desc_count", "title_eq"] or not all(plans.values()):
    problems.append(f"objects_explain: plans {plans}")
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
echo "smoke: all 10 herald-bench runs passed ($((SECONDS - started)) s including the build)"
