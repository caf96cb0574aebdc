#!/usr/bin/env bash
# The gateway and nginx in front of backends that close idle kept connections (loopback only,
# bounded: about a minute of traffic per backend, three backends).
#
#   bash benches/keepalive.sh
#
# Builds the gateway (debug: this measures answers, not speed; GATEWAY_BIN to take another
# build), installs what is missing of nginx and Node from Debian's packages, then
# benches/keepalive.py runs, per backend (Node's `http` server with keepAliveTimeout 5 s and
# 1 s, Python's `http.server` with a 1 s socket timeout), the same traffic through the gateway
# and nginx at once, with pauses around the backend's idle timeout, and prints what the clients
# got and what each proxy logged. Settings by environment: KEEPALIVE_CLIENTS (6 per proxy),
# KEEPALIVE_SECONDS (60 per backend), KEEPALIVE_SPREAD (0.02: pauses within 2 % of the idle
# timeout), KEEPALIVE_BACKENDS (node-5s,node-1s,python-1s), KEEPALIVE_SEED,
# KEEPALIVE_SHOW_LOGS. BENCHMARKS.md's figures: the defaults, then KEEPALIVE_CLIENTS=40
# KEEPALIVE_SECONDS=40 KEEPALIVE_SPREAD=0.001 (pauses within 1 ms of the timeout, which makes
# crossings common enough to count on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/gateway_common.sh
need nginx-light nodejs
if [ -z "${GATEWAY_BIN:-}" ]; then
  cargo build --quiet --features gateway --bin tower-monitor-gateway
fi
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
gateway=${GATEWAY_BIN:-$target_dir/debug/tower-monitor-gateway}
nginx=$(command -v nginx || echo /usr/sbin/nginx)
python3 benches/keepalive.py "$gateway" "$nginx"
