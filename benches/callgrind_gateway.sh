#!/usr/bin/env bash
# User-space instructions per request of the gateway, free of the machine's noise: the gateway
# (release build, one worker, backend cached up) runs under callgrind in front of an nginx
# backend answering `hello` itself; instrumentation is on only for a bounded wrk run, and the
# instructions counted are divided by the requests wrk counted. On 127.0.0.1 only.
#
# Run: bash benches/callgrind_gateway.sh   (about a minute after the build; needs valgrind,
#      nginx and wrk: installs them from Debian's packages if missing)
# Knobs: DURATION (default 10s), CONNECTIONS (default 8), OUT (the callgrind file, default a
#        temporary one; keep it to read with callgrind_annotate), GATEWAY_BIN (a gateway binary to
#        run instead of building this tree's, to compare builds).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-8}

source benches/gateway_common.sh
need wrk valgrind nginx-light
gateway_bin=$(gateway_program)
out=${OUT:-$workdir/callgrind.out}

backend_port=$(free_port)
start_nginx backend 1 "server { listen 127.0.0.1:$backend_port; location / { return 200 'hello\n'; } }"
wait_for "127.0.0.1:$backend_port"

gateway_port=$(free_port)
cat >"$workdir/gateway.json" <<JSON
{ "gateway": { "listen": "127.0.0.1:$gateway_port", "routes": [ { "service": "app" } ] },
  "services": { "app": { "url": "http://127.0.0.1:$backend_port/", "grace_period": "1h" } } }
JSON
RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
  "$gateway_bin" --config "$workdir/gateway.json" --workers 1 >"$workdir/gateway.log" 2>&1 &
gateway_pid=$!
pids+=("$gateway_pid")
wait_for "127.0.0.1:$gateway_port"

# Warm up (the upstream connections opened), then count the bounded run only.
wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$gateway_port/" >/dev/null
callgrind_control -i on "$gateway_pid" >/dev/null 2>&1
result=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "http://127.0.0.1:$gateway_port/")
callgrind_control -i off "$gateway_pid" >/dev/null 2>&1
requests=$(awk '/requests in/ {print $1}' <<<"$result")
kill -TERM "$gateway_pid"
wait "$gateway_pid" || true

instructions=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "requests: $requests  instructions: $instructions  per request: $((instructions / requests))"
