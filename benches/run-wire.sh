#!/usr/bin/env bash
# The wire benchmark procedure of benches/README.md: start-up time, idle RSS, produce
# (acks=1 and acks=all), e2e latency, each against a fresh release broker on loopback.
# Usage: benches/run-wire.sh [path/to/agentlog] [results-dir]
# Prints one JSON report per run (agentlog bench --json) into results-dir/*.json and
# the client's own CPU use (from /usr/bin/time) into results-dir/*.time.
set -euo pipefail

BIN=${1:-target/release/agentlog}
OUT=${2:-$(mktemp -d)}
RECORDS=${RECORDS:-2000000}
E2E_SECS=${E2E_SECS:-30}
mkdir -p "$OUT"
echo "results in $OUT" >&2

# Start-up: time from exec to the first "agentlog listening on" line, 5 times (or as many
# as the third argument says), on the data dir given (kept) or on a fresh empty one each
# time (removed). Prints the sorted microsecond figures into $OUT/$1.txt.
startup() { # name, [data dir], [times]
    local name=$1 keep=${2:-} times=() dir t0 t1 pid line
    for _ in $(seq "${3:-5}"); do
        dir=${keep:-$(mktemp -d)}
        t0=$EPOCHREALTIME
        exec 3< <(exec "$BIN" --listen 127.0.0.1:0 --data-dir "$dir" 2>/dev/null)
        pid=$!
        read -r line <&3
        t1=$EPOCHREALTIME
        kill "$pid"; wait "$pid" 2>/dev/null || true
        exec 3<&-
        [ -n "$keep" ] || rm -rf "$dir"
        times+=($(( (${t1/./} - ${t0/./}) )))
    done
    printf '%s\n' "${times[@]}" | sort -n > "$OUT/$name.txt"
    echo "$name µs (sorted): $(tr '\n' ' ' < "$OUT/$name.txt")" >&2
}
startup startup_us

# One broker for the wire runs.
dir=$(mktemp -d)
"$BIN" --listen 127.0.0.1:0 --data-dir "$dir" > "$OUT/broker.out" 2> "$OUT/broker.err" &
BROKER=$!
trap 'kill $BROKER 2>/dev/null || true; wait $BROKER 2>/dev/null || true; rm -rf "$dir"' EXIT
until grep -q "listening on" "$OUT/broker.out" 2>/dev/null; do sleep 0.05; done
ADDR=$(sed -n 's/^agentlog listening on //p' "$OUT/broker.out" | head -1)
sleep 1
grep VmRSS "/proc/$BROKER/status" | tee "$OUT/idle_rss.txt" >&2

run() { # name, then bench arguments
    local name=$1; shift
    /usr/bin/time -f "client user %U s, sys %S s, wall %e s" -o "$OUT/$name.time" \
        "$BIN" bench "$@" --bootstrap "$ADDR" --broker-pid "$BROKER" --json \
        | tail -1 > "$OUT/$name.json"
    echo "$name: $(cat "$OUT/$name.json")" >&2
    echo "$name: $(cat "$OUT/$name.time")" >&2
}

run produce_acks1_p1 produce --topic p-acks1-p1 --records "$RECORDS" --acks 1
run produce_acks1_p4 produce --topic p-acks1-p4 --records "$RECORDS" --acks 1 --producers 4
run produce_acksall_p4 produce --topic p-acksall-p4 --records "$RECORDS" --acks all --producers 4
run consume_2m consume --topic p-acks1-p1 --records "$RECORDS"
run e2e_10k e2e --topic e2e-default --rate 10000 --duration "$E2E_SECS"
run e2e_10k_linger0 e2e --topic e2e-linger0 --rate 10000 --duration "$E2E_SECS" --linger-ms 0

# Start-up with existing data (FILL_GB=10 for the issue's 10 GB): a second broker is
# filled with 10 KB records (1 GiB segments), SIGKILLed, started once (crash recovery:
# the active segment is validated from its last recovery point, here its start), stopped
# cleanly, then timed like the empty start-up.
if [ -n "${FILL_GB:-}" ]; then
    kill "$BROKER"; wait "$BROKER" 2>/dev/null || true
    filled=$(mktemp -d)
    trap 'rm -rf "$dir" "$filled"' EXIT
    "$BIN" --listen 127.0.0.1:0 --data-dir "$filled" > "$OUT/fill.out" 2>/dev/null &
    FILLER=$!
    until grep -q "listening on" "$OUT/fill.out" 2>/dev/null; do sleep 0.05; done
    FILL_ADDR=$(sed -n 's/^agentlog listening on //p' "$OUT/fill.out" | head -1)
    "$BIN" bench produce --bootstrap "$FILL_ADDR" --topic fill --record-size 10000 \
        --records $((FILL_GB * 100000)) --acks 1 --json 2>/dev/null | tail -1 > "$OUT/fill.json"
    kill -KILL "$FILLER"; wait "$FILLER" 2>/dev/null || true
    echo "filled: $(du -sh "$filled" | cut -f1), $(find "$filled" -name '*.log' | wc -l) segments" >&2
    startup startup_crash_us "$filled" 1
    startup startup_filled_us "$filled"
fi
