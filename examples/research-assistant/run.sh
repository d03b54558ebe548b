#!/usr/bin/env bash
# The research assistant in one command: starts the model server from .models/ and
# `agentlog serve` with agentlog.toml (verbatim, OPENAI_BASE_URL set) on free ports, loads
# the corpus, asks one question, prints its report with the documents it cites, and
# stops everything.
#
#   examples/research-assistant/run.sh ["Your research question?"]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
models="$root/.models"
question="${1:-How do bees make honey?}"
if [[ ! -x "$models/python" || ! -e "$models/smollm2.gguf" || ! -e "$models/minilm/model.onnx" ]]; then
    echo "no model files in $models: run scripts/models.sh first" >&2
    exit 1
fi

cd "$root"
cargo build --quiet --bin agentlog --example research-assistant
target="${CARGO_TARGET_DIR:-$root/target}/debug"

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    "$models/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

model_port="$(free_port)"
echo "model server on 127.0.0.1:$model_port (log: $work/model.log)"
"$models/python" -m llama_cpp.server --model "$models/smollm2.gguf" --model_alias smollm2 \
    --host 127.0.0.1 --port "$model_port" --n_ctx 4096 --n_threads 2 --verbose false \
    >"$work/model.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 240); do
    curl -sf "http://127.0.0.1:$model_port/v1/models" >/dev/null && break
    sleep 0.5
done
curl -sf "http://127.0.0.1:$model_port/v1/models" >/dev/null || { echo "the model server did not start" >&2; exit 1; }

OPENAI_BASE_URL="http://127.0.0.1:$model_port/v1" AGENTLOG_LOG="${AGENTLOG_LOG:-warn}" \
    "$target/agentlog" serve --listen 127.0.0.1:0 --http 127.0.0.1:0 \
    --data-dir "$work/data" --config "$here/agentlog.toml" >"$work/serve.log" 2>&1 &
pids+=($!)
bootstrap=""
http=""
for _ in $(seq 1 120); do
    bootstrap="$(sed -n 's/^agentlog listening on //p' "$work/serve.log" | head -n 1)"
    http="$(sed -n 's/^agentlog http on //p' "$work/serve.log" | head -n 1)"
    [[ -n "$bootstrap" && -n "$http" ]] && break
    sleep 0.5
done
[[ -n "$bootstrap" && -n "$http" ]] || { echo "agentlog did not start:" >&2; cat "$work/serve.log" >&2; exit 1; }
echo "agentlog on $bootstrap, http on $http (log: $work/serve.log)"

"$target/examples/research-assistant" --bootstrap "$bootstrap" --http "$http" "$question"
