#!/usr/bin/env bash
# Chaos load through the gateway (loopback only, bounded: about 30 s of load).
#
#   bash benches/chaos.sh
#
# Builds the gateway in release mode, then benches/chaos.py starts a backend and the gateway in
# front of it, runs 16 keep-alive clients, kills the backend with SIGKILL and restarts it five
# times, and prints what the clients saw and the gateway's RSS and fds. Settings by environment:
# CHAOS_CLIENTS, CHAOS_KILLS, CHAOS_PERIOD, CHAOS_DOWN_FOR (seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --features gateway --bin tower-monitor-gateway
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
exec python3 benches/chaos.py "$target_dir/release/tower-monitor-gateway"
