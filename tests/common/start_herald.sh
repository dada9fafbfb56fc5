# Sourced by bench/smoke.sh and tests/fuzz/schemathesis.sh: a Herald of their own to run against.
#
# herald_scratch: a temporary directory `dir`, removed on exit together with the server that
# start_herald started (unless `pid` was emptied after stopping it), and a fresh account key `key`
# (40 hex, last digit even) for HERALD_ADMIN_KEY.
herald_scratch() {
    dir=$(mktemp -d)
    pid=
    trap stop_herald_and_clean_up EXIT
    key="$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' | cut -c1-39)0"
}

stop_herald_and_clean_up() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}

# start_herald NAME LOG HERALD [SERVE ARGS...]: runs `HERALD serve` on a free loopback port (port 0:
# the kernel picks one, and Herald logs the one it got) in the background, its output in LOG, and
# waits until it answers /health/live. Sets `pid` and `url` (http://127.0.0.1:PORT); exits the
# script, saying why under NAME, if the server stops or is not live within 20 s.
start_herald() {
    local name=$1 log=$2 herald=$3
    shift 3
    "$herald" serve --listen 127.0.0.1:0 "$@" >"$log" 2>&1 &
    pid=$!
    url=
    for _ in $(seq 200); do
        url=$(grep -o 'listening on http://127\.0\.0\.1:[0-9]*' "$log" | head -n1 | cut -d' ' -f3) || true
        [ -n "$url" ] && curl -fs "$url/health/live" >/dev/null 2>&1 && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$name: herald exited at start:" >&2
            cat "$log" >&2
            exit 1
        fi
        url=
        sleep 0.1
    done
    echo "$name: herald did not become live within 20 s:" >&2
    tail -n 20 "$log" >&2
    exit 1
}
