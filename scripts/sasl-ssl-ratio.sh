#!/usr/bin/env bash
# Produce throughput and broker CPU over SASL_SSL (SCRAM-SHA-512) against PLAINTEXT, on
# one broker in one run, alternated (issue 16's target: SASL_SSL ≥ 0.7× PLAINTEXT).
#
#   scripts/sasl-ssl-ratio.sh [BINARY] [RECORDS] [ROUNDS]
#   (defaults: target/release/agentlog, 2000000 records of 100 B, 2 rounds)
#
# Prints one `bench produce` summary per run; the ratio is read off them.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/release/agentlog}" records="${2:-2000000}" rounds="${3:-2}"
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"' EXIT
scripts/make-test-certs.sh "$work/certs" >/dev/null
cat >"$work/broker.toml" <<TOML
listeners = ["PLAINTEXT://127.0.0.1:0", "SASL_SSL://127.0.0.1:0"]
ssl.keystore.location = "$work/certs/broker.pem"
sasl.enabled.mechanisms = ["SCRAM-SHA-512"]
TOML
env -u AGENTLOG_BIN "$bin" serve --config "$work/broker.toml" --data-dir "$work/data" >"$work/out" 2>"$work/log" &
pid=$!
until [ "$(grep -c 'listening on' "$work/out" 2>/dev/null)" -ge 2 ]; do sleep 0.05; done
plain=$(sed -n 's/^agentlog listening on \([0-9.]*:[0-9]*\)$/\1/p' "$work/out" | head -1)
secure=$(sed -n 's/^agentlog listening on SASL_SSL:\/\///p' "$work/out" | head -1)
echo 'bench-secret' | "$bin" users add bench --mechanism SCRAM-SHA-512 -b "$plain" >/dev/null
tls=(-X security.protocol=SASL_SSL -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username=bench
  -X sasl.password=bench-secret -X "ssl.ca.location=$work/certs/ca.crt")
for round in $(seq 1 "$rounds"); do
  echo "== round $round: PLAINTEXT"
  "$bin" bench produce --bootstrap "$plain" --topic "plain$round" --records "$records" \
    --acks 1 --broker-pid "$pid" | tail -3
  echo "== round $round: SASL_SSL (SCRAM-SHA-512)"
  "$bin" bench produce --bootstrap "$secure" --topic "secure$round" --records "$records" \
    --acks 1 --broker-pid "$pid" "${tls[@]}" | tail -3
done
