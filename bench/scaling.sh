#!/usr/bin/env bash
# One `serve` process against two (two replicas on one node, or what
# `--workers 2` would run), each loaded by wrk with the typical payload.
# Run `make bench` (or `python -m bench.payloads DIR`) first for the payload and
# certificates. Loopback only; the servers stop at the end.
#   bash bench/scaling.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
work=bench/results/work
certs="$work/certs"
payload="$work/payloads/typical.json"
[[ -f "$payload" && -f "$certs/tls.crt" ]] || {
    echo "scaling: run make bench first (needs $payload and $certs)" >&2
    exit 2
}
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
for port in 19001 19002; do
    .venv/bin/heartbeat-webhook serve --host 127.0.0.1 --port "$port" \
        --cert-file "$certs/tls.crt" --key-file "$certs/tls.key" --drain-seconds 0 \
        >"$work/scaling-$port.log" 2>&1 &
    pids+=("$!")
done
sleep 4
load() { # PORT CONNECTIONS -> reviews/s
    wrk -t1 -c"$2" -d5s --timeout 5s -s bench/post.lua "https://127.0.0.1:$1/mutate" -- "$payload" |
        awk '/Requests\/sec/ {print $2}'
}
for ((round = 1; round <= rounds; round++)); do
    one="$(load 19001 16)"
    load 19001 8 >"$work/scaling-a.txt" &
    load 19002 8 >"$work/scaling-b.txt"
    wait "$!"
    echo "round $round: one process $one reviews/s; two processes $(cat "$work/scaling-a.txt") + $(cat "$work/scaling-b.txt")"
done
