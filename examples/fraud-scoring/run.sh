#!/usr/bin/env bash
# The fraud scoring example in one command, from anywhere:
#   examples/fraud-scoring/run.sh [TRANSACTIONS]   (default 20000)
# trains and exports the model (fixed seed), generates labelled test transactions with
# another seed, runs agentlog's broker and the `onnx` agent of agentlog.toml on them,
# and prints precision and recall of the alerts on fraud.alerts.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
[ -e .models/libonnxruntime.so ] || bash scripts/models.sh
# The venv's python by its own path (Python finds its venv next to argv[0]).
PY="$(readlink .models/python || echo .models/python)"
HERE=examples/fraud-scoring
"$PY" "$HERE/fraud.py" train --out "$HERE/model.onnx"
mkdir -p target
"$PY" "$HERE/fraud.py" generate --n "${1:-20000}" --seed 11 --out target/fraud-test.jsonl
echo "offline (python onnxruntime, threshold 0.8):"
"$PY" "$HERE/fraud.py" evaluate --data target/fraud-test.jsonl --model "$HERE/model.onnx" --threshold 0.8
echo "through agentlog (onnx agent, threshold 0.8):"
cargo run -q --release --example fraud-scoring -- \
  "$HERE/agentlog.toml" target/fraud-test.jsonl
