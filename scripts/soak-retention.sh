#!/usr/bin/env bash
# Bounded retention soak (not run in CI): produce continuously for N minutes with
# retention on and print the partition's disk usage every 10 s; it must stay flat.
#   scripts/soak-retention.sh [MINUTES] [RATE]     (defaults: 2 minutes, 20000 records/s)
# AGENTLOG_BIN=path/to/agentlog skips the release build.
set -euo pipefail
minutes="${1:-2}"
rate="${2:-20000}"
cd "$(dirname "$0")/.."
bin="${AGENTLOG_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --bin agentlog >&2
  bin="${CARGO_TARGET_DIR:-target}/release/agentlog"
fi
data="$(mktemp -d)"
trap 'kill "$broker" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$data"' EXIT
"$bin" --listen 127.0.0.1:0 --data-dir "$data" \
  --set log.segment.bytes=65536 --set log.retention.bytes=4194304 \
  --set log.retention.check.interval.ms=1000 --set log.flush.policy=interval \
  >"$data/stdout" 2>"$data/stderr" &
broker=$!
for _ in $(seq 100); do grep -q "listening on" "$data/stdout" && break; sleep 0.1; done
addr="$(grep -m1 -o 'listening on .*' "$data/stdout" | cut -d' ' -f3)"
secs=$((minutes * 60))
"$bin" bench produce --bootstrap "$addr" --topic soak --duration "$secs" --rate "$rate" \
  --record-size 200 --broker-pid "$broker" >"$data/bench.out" 2>&1 &
producer=$!
echo "elapsed_s disk_bytes segments log_start rss_kb"
for ((t = 10; t <= secs; t += 10)); do
  sleep 10
  dir="$data/logs/soak-0"
  bytes="$(du -sb "$dir" 2>/dev/null | cut -f1)"
  segments="$(ls "$dir"/*.log 2>/dev/null | wc -l)"
  start="$(cut -d' ' -f2 "$dir/log-start-offset" 2>/dev/null || echo 0)"
  rss="$(awk '/VmRSS/ {print $2}' /proc/"$broker"/status)"
  echo "$t $bytes $segments $start $rss"
done
wait "$producer" || true
tail -5 "$data/bench.out"
