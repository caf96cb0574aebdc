#!/usr/bin/env bash
# Wake and idle-stop cycles through the gateway with real backend programs (loopback only,
# bounded: about 100 s).
#
#   bash benches/cycles.sh
#
# Builds the gateway in release mode, then benches/cycles.py has it front six `python3 -m
# http.server` backends, each started on demand and stopped after 800 ms idle, drives them with
# clients that come and go for 60 s, and checks that every request got a 200, every start was
# matched by a stop, no program outlived its idle time or the gateway, and the gateway's RSS, fds
# and threads came back. Settings by environment: CYCLES_SERVICES, CYCLES_CLIENTS,
# CYCLES_SECONDS, CYCLES_IDLE_MS, CYCLES_PAUSE_MS.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --features gateway --bin tower-monitor-gateway
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
exec python3 benches/cycles.py "$target_dir/release/tower-monitor-gateway"
