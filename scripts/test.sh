#!/usr/bin/env bash
# agentlog's full test run: the one command CI (.ci/run) and developers use.
#
#   bash scripts/test.sh
#
# 1. installs what is missing (apt: kcat, C toolchain for the bundled librdkafka of the
#    Rust rdkafka dev-dependency, node/npm, python3-venv), a .venv at the repo root with
#    tests/python/requirements.txt, the model runtimes and model files of the agent
#    tests (scripts/models.sh: ONNX Runtime, MiniLM, SmolLM2 and llama.cpp's server,
#    linked under .models/), and tests/js/node_modules via `npm ci`;
# 2. builds everything (cargo build --workspace --all-targets);
# 3. runs every suite, even when an earlier one failed:
#      cargo test --workspace | pytest tests/python | node --test tests/js | pytest tests/kcat
# and exits non-zero if the build or any suite failed. Safe to run again: the .venv and
# node_modules are reused while their pinned inputs are unchanged.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export DEBIAN_FRONTEND=noninteractive
# The client suites find the broker through AGENTLOG_BIN. It is passed to those suites only:
# the broker itself reads every AGENTLOG_* variable as a setting and refuses unknown ones,
# so it must not leak into cargo's tests (which spawn the binary with the inherited env).
AGENTLOG_BIN="${AGENTLOG_BIN:-$ROOT/target/debug/agentlog}"
export -n AGENTLOG_BIN 2>/dev/null || true
export PIP_DISABLE_PIP_VERSION_CHECK=1
export NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false NPM_CONFIG_UPDATE_NOTIFIER=false
# A CI run builds once from a clean clone: incremental compilation caches would only double
# what target/ writes to a disk that CI shares with other work.
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi

SCRIPT_START=$(date +%s)
declare -a RESULTS=()
FAILED=0

section() {
  echo
  echo "=================================================================="
  echo "== $*"
  echo "=================================================================="
}

# run_step NAME CMD...: run, time, and record a step; never aborts the script.
run_step() {
  local name="$1"; shift
  section "$name"
  echo "+ $*"
  local t0=$SECONDS rc
  "$@"
  rc=$?
  local dt=$((SECONDS - t0))
  if [ "$rc" -eq 0 ]; then
    RESULTS+=("PASS  ${name}  (${dt}s)")
  else
    RESULTS+=("FAIL  ${name}  (${dt}s, exit ${rc})")
    FAILED=$((FAILED + 1))
  fi
  echo "-- ${name}: exit ${rc} after ${dt}s"
  return "$rc"
}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi

APT_UPDATED=0
apt_install() {
  [ "$#" -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not available; please install: $*" >&2
    return 1
  fi
  if [ "$APT_UPDATED" -eq 0 ]; then
    $SUDO apt-get update -qq || return 1
    APT_UPDATED=1
  fi
  echo "apt-get install: $*"
  $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null || return 1
}

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# ---------------------------------------------------------------------------
install_system_deps() {
  local missing=()
  command -v kcat >/dev/null 2>&1 || missing+=(kcat)
  # bundled librdkafka (rdkafka-sys) is built with ./configure && make; zlib via pkg-config;
  # zstd is built from source by zstd-sys, so no libzstd-dev is needed.
  if ! command -v make >/dev/null 2>&1 || ! command -v gcc >/dev/null 2>&1 \
      || ! command -v g++ >/dev/null 2>&1; then
    missing+=(build-essential)
  fi
  command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
  if command -v dpkg-query >/dev/null 2>&1; then
    have_pkg libc6-dev || missing+=(libc6-dev)
    have_pkg zlib1g-dev || missing+=(zlib1g-dev)
    # librdkafka's TLS and SCRAM (rdkafka's `ssl` feature) link the system OpenSSL.
    have_pkg libssl-dev || missing+=(libssl-dev)
  fi
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  # scripts/make-test-certs.sh (security tests and the README example).
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  # tests/console.rs drives the web console in headless Chromium.
  command -v chromium >/dev/null 2>&1 || missing+=(chromium fonts-liberation)
  if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}" || return 1
  else
    echo "all system packages present"
  fi
  echo "kcat: $(kcat -V 2>&1 | grep -m1 Version || true)"
  echo "node: $(node --version 2>&1), npm: $(npm --version 2>&1), python3: $(python3 --version 2>&1)"
  echo "chromium: $(chromium --version 2>&1)"
}

setup_python() {
  local req="tests/python/requirements.txt" stamp=".venv/.requirements.sha256" sum
  sum="$(sha256sum "$req" | cut -d' ' -f1)"
  if [ -x .venv/bin/python ] && .venv/bin/python -c 'import sys' 2>/dev/null \
      && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then
    echo ".venv is up to date ($req unchanged)"
    return 0
  fi
  if ! [ -x .venv/bin/python ] || ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
    rm -rf .venv
    if ! python3 -m venv .venv; then
      rm -rf .venv
      apt_install python3-venv || return 1
      python3 -m venv .venv || return 1
    fi
  fi
  .venv/bin/python -m pip install -q -r "$req" || return 1
  echo "$sum" > "$stamp"
  .venv/bin/python -m pip freeze
}

setup_js() {
  local stamp="tests/js/node_modules/.package-lock.sha256" sum
  sum="$(sha256sum tests/js/package-lock.json | cut -d' ' -f1)-$(node --version)"
  if [ -d tests/js/node_modules ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then
    echo "tests/js/node_modules is up to date (package-lock.json unchanged)"
    return 0
  fi
  (cd tests/js && npm ci --no-audit --no-fund) || return 1
  echo "$sum" > "$stamp"
}

# Free disk space is printed before and after the build: a full disk shows up as odd
# linker and compiler crashes, and this line makes the cause obvious in the log.
disk_report() { df -h "$ROOT" | tail -n 1 | awk '{print "disk: " $4 " free of " $2 " at '"$ROOT"'"}'; }
cargo_build() {
  disk_report
  env -u AGENTLOG_BIN cargo build --workspace --all-targets
  local rc=$?
  disk_report
  du -sh target 2>/dev/null | awk '{print "target/: " $1}'
  return "$rc"
}
# --no-fail-fast: run every test binary even when an earlier one fails
cargo_tests() { env -u AGENTLOG_BIN cargo test --workspace --no-fail-fast; }

python_tests() {
  [ -x "$AGENTLOG_BIN" ] || { echo "no agentlog binary at $AGENTLOG_BIN" >&2; return 1; }
  AGENTLOG_BIN="$AGENTLOG_BIN" .venv/bin/python -m pytest tests/python -ra --durations=10
}

js_tests() {
  [ -x "$AGENTLOG_BIN" ] || { echo "no agentlog binary at $AGENTLOG_BIN" >&2; return 1; }
  # explicit file list: works the same on node 18 (Debian), 20 and 22 (glob semantics)
  AGENTLOG_BIN="$AGENTLOG_BIN" node --test tests/js/*.test.js
}

kcat_tests() {
  [ -x "$AGENTLOG_BIN" ] || { echo "no agentlog binary at $AGENTLOG_BIN" >&2; return 1; }
  command -v kcat >/dev/null 2>&1 || { echo "kcat is not installed" >&2; return 1; }
  AGENTLOG_BIN="$AGENTLOG_BIN" .venv/bin/python -m pytest tests/kcat -ra
}

# ---------------------------------------------------------------------------
run_step "setup: system packages (apt)" install_system_deps
run_step "setup: python .venv (tests/python/requirements.txt)" setup_python
PY_OK=$?
run_step "setup: models (scripts/models.sh: onnxruntime, MiniLM, SmolLM2, llama.cpp server)" \
  bash scripts/models.sh
run_step "setup: node modules (npm ci in tests/js)" setup_js
JS_OK=$?
if ! run_step "build: cargo build --workspace --all-targets" cargo_build; then
  # a test/bench target that does not compile must not leave the client suites running
  # against a stale broker: build just the binary they need
  run_step "build: cargo build --bin agentlog (fallback for the client suites)" \
    env -u AGENTLOG_BIN cargo build --bin agentlog
fi

run_step "suite: cargo test --workspace" cargo_tests
if [ "$PY_OK" -eq 0 ]; then
  run_step "suite: pytest tests/python (kafka-python)" python_tests
else
  RESULTS+=("FAIL  suite: pytest tests/python (not run: .venv setup failed)"); FAILED=$((FAILED + 1))
fi
if [ "$JS_OK" -eq 0 ]; then
  run_step "suite: node --test tests/js (kafkajs)" js_tests
else
  RESULTS+=("FAIL  suite: node --test tests/js (not run: npm ci failed)"); FAILED=$((FAILED + 1))
fi
if [ "$PY_OK" -eq 0 ]; then
  run_step "suite: pytest tests/kcat (kcat / librdkafka)" kcat_tests
else
  RESULTS+=("FAIL  suite: pytest tests/kcat (not run: .venv setup failed)"); FAILED=$((FAILED + 1))
fi

section "summary ($(( $(date +%s) - SCRIPT_START ))s total)"
for r in "${RESULTS[@]}"; do echo "  $r"; done
if [ "$FAILED" -ne 0 ]; then
  echo "scripts/test.sh: ${FAILED} step(s) FAILED"
  exit 1
fi
echo "scripts/test.sh: all steps passed"
exit 0
