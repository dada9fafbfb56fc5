#!/usr/bin/env bash
# Schemathesis against a real Herald, driven by the document it serves (/v1.1/openapi.json).
#
# Starts the debug binary on a free loopback port with a temporary SQLite file, creates an
# instance `fuzzing`, a trusted API key (ignore_acl), a plain API key, a user with its user key and a
# `separate_rooms` channel, then runs Schemathesis as the user (plain key + user key), with the
# trusted key, and on the poll route alone with `transport=sse`. Checks: no 5xx (not_a_server_error), and every status code, content type,
# header and body conforms to the document. Exits non-zero on any finding.
#
#   tests/fuzz/schemathesis.sh                                   # CI size, under three minutes
#   HERALD_FUZZ_MAX_EXAMPLES=200 HERALD_FUZZ_MAX_TIME=900 tests/fuzz/schemathesis.sh # 35 minutes
#
# HERALD_FUZZ_MAX_EXAMPLES: examples per operation (default 10).
# HERALD_FUZZ_MAX_TIME: seconds for each of the first two runs, 0 = no limit (default 75; the SSE
# run gets a third of it). Schemathesis keeps fuzzing until the budget is spent, so each run takes
# about this long.
#
# Path parameters are fixed to the objects made here (`instance=fuzzing`, `channel=room`,
# `class=user_profile`): random names only ever reach `Instance was not found.`.
#
# Streams: the first two runs give the poll route `transport=poll` (the default), whose waits end
# after the server's `--poll-timeout 1s` with a 204. `transport=sse` answers an endless
# `text/event-stream`: the third run reads at most 3 events or 3 s of each stream (Schemathesis cuts
# it there, which is not a failure). `transport=websocket` is an upgrade Schemathesis does not
# perform (without one it is a 400); tests/api/websocket.rs covers it.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/common/start_herald.sh
. tests/common/start_herald.sh

max_examples=${HERALD_FUZZ_MAX_EXAMPLES:-10}
max_time=${HERALD_FUZZ_MAX_TIME:-75}
started=$SECONDS

venv=target/fuzz-venv
if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --no-deps -r tests/fuzz/requirements.txt

cargo build --bin herald --quiet
herald=${CARGO_TARGET_DIR:-target}/debug/herald

herald_scratch
# No anonymous or log-in budgets and no log-in lock-out: Schemathesis sends far more requests (and
# wrong passwords) from one address than a person would, and a 429 would hide the real answer.
HERALD_ADMIN_KEY=$key start_herald fuzz "$dir/herald.log" "$herald" \
    --database-url "sqlite://$dir/herald.db" --rate-anon 0 --rate-login 0 --login-max-failures 0 \
    --poll-timeout 1s --log warn,herald=info --log-format json
echo "fuzz: herald (debug) at $url"

# call METHOD PATH KEY [JSON] [USER_KEY]: the JSON answer; fails on anything but 2xx.
call() {
    curl -sS --fail-with-body -X "$1" -H "X-API-KEY: $3" ${5:+-H "X-USER-KEY: $5"} \
        -H 'Content-Type: application/json' ${4:+--data "$4"} "$url$2"
}
field() {
    python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

call POST /v1.1/instances/ "$key" '{"name": "fuzzing"}' >/dev/null
trusted=$(call POST /v1.1/instances/fuzzing/api_keys/ "$key" \
    '{"description": "fuzz trusted", "ignore_acl": true}' | field api_key)
plain=$(call POST /v1.1/instances/fuzzing/api_keys/ "$key" \
    '{"description": "fuzz plain", "allow_user_create": true, "allow_group_create": true}' | field api_key)
user_key=$(call POST /v1.1/instances/fuzzing/users/ "$key" \
    '{"username": "fuzzer", "password": "fuzz-password"}' | field user_key)
call POST /v1.1/instances/fuzzing/channels/ "$key" \
    '{"name": "room", "type": "separate_rooms", "other_permissions": "publish", "custom_publish": true}' >/dev/null
call POST /v1.1/instances/fuzzing/channels/room/publish/ "$key" \
    '{"room": "lobby", "payload": {"hello": "world"}}' >/dev/null

max_time_flag=
# /metrics is documented; a server that does not serve it here (it may have its own listener) would
# answer 404, so it is then left out.
excluded=()
if [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/metrics")" = 404 ]; then
    excluded=(--exclude-path /metrics)
fi
sse_time_flag=
if [ "$max_time" != 0 ]; then
    max_time_flag="--max-time=$max_time"
    sse_time_flag="--max-time=$(((max_time + 2) / 3))"
fi

# run NAME [SCHEMATHESIS ARGS...]
failed=0
run() {
    local name=$1
    shift
    echo "== schemathesis as $name"
    local run_started=$SECONDS
    if ! "$venv/bin/schemathesis" --no-color --config-file tests/fuzz/schemathesis.toml \
        run "$url/v1.1/openapi.json" \
        --url "$url" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
        --max-examples "$max_examples" \
        --request-timeout 10 \
        --seed 1 \
        --generation-with-security-parameters false \
        --generation-database none \
        ${max_time_flag:+$max_time_flag} \
        "${excluded[@]}" \
        "$@"; then
        failed=1
    fi
    echo "== schemathesis as $name: $((SECONDS - run_started)) s"
}

# The user first: the trusted run may delete the user or reset its key. The user may reset its own
# key, after which its requests would all be a bare key's: that one operation is left out.
export HERALD_FUZZ_TRANSPORT=poll
run user -H "X-API-KEY: $plain" -H "X-USER-KEY: $user_key" --exclude-operation-id resetUserKey
run "trusted key" -H "X-API-KEY: $trusted"
HERALD_FUZZ_TRANSPORT=sse
max_time_flag=$sse_time_flag
run "trusted key, SSE" -H "X-API-KEY: $trusted" --include-operation-id poll --request-timeout 3

if grep -q '"level":"ERROR"' "$dir/herald.log"; then
    echo "fuzz: the server logged errors:" >&2
    grep '"level":"ERROR"' "$dir/herald.log" | head -n 20 >&2
    failed=1
fi
echo "fuzz: done in $((SECONDS - started)) s"
exit $failed
