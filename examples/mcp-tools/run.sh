#!/usr/bin/env bash
# MCP over topics in one command: starts `agentlog serve` with agentlog.toml on a free
# loopback port (the bridge starts the weather server), calls its tools from Python
# through the topics, and stops everything.
#
#   examples/mcp-tools/run.sh [CITY ...]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/.venv"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import mcp, kafka' 2>/dev/null; then
    echo "no .venv with the mcp and kafka-python packages: run scripts/test.sh once, or" >&2
    echo "python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt" >&2
    exit 1
fi
export PATH="$venv/bin:$PATH"   # the `python3` agentlog.toml starts

cd "$root"
cargo build --quiet --bin agentlog
target="${CARGO_TARGET_DIR:-$root/target}/debug"
work="$(mktemp -d)"
pid=""
cleanup() {
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

"$target/agentlog" serve --config "$here/agentlog.toml" --listen 127.0.0.1:0 \
    --data-dir "$work/data" >"$work/out.log" 2>"$work/err.log" &
pid=$!
for _ in $(seq 100); do
    bootstrap="$(sed -n 's/^agentlog listening on //p' "$work/out.log" | head -1)"
    [[ -n "$bootstrap" ]] && break
    sleep 0.1
done
[[ -n "$bootstrap" ]] || { echo "agentlog did not start:" >&2; cat "$work/err.log" >&2; exit 1; }
python3 "$here/call.py" "$bootstrap" "$@"
