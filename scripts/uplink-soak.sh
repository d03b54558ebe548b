#!/usr/bin/env bash
# Uplink soak (not CI): an edge forwards exactly once to a central agentlog while a
# producer writes continuously and the link (a TCP proxy) is cut CUTS times at random
# moments during SECONDS; then every acknowledged record must be on central exactly
# once, in order per partition (tests/uplink_soak.rs). Exit 0 means 0 lost, 0
# duplicated. UPLINK_SOAK_SEED=N repeats a run's cut times.
#   scripts/uplink-soak.sh            # 30 minutes, 100 cuts
#   scripts/uplink-soak.sh 300 20     # 5 minutes, 20 cuts
# UPLINK_SOAK_RELEASE=1 runs it on a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
export UPLINK_SOAK_SECS="${1:-1800}" UPLINK_SOAK_CUTS="${2:-100}"
exec cargo test ${UPLINK_SOAK_RELEASE:+--release} --test uplink_soak -- --ignored --nocapture
