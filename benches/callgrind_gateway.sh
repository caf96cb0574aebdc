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

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} from Debian's packages"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
nginx=$(command -v nginx || echo /usr/sbin/nginx)

if [ -z "${GATEWAY_BIN:-}" ]; then
  cargo build --release --quiet --features gateway --bin tower-monitor-gateway
fi
gateway_bin=${GATEWAY_BIN:-${CARGO_TARGET_DIR:-target}/release/tower-monitor-gateway}

workdir=$(mktemp -d)
out=${OUT:-$workdir/callgrind.out}
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$workdir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() {
  for _ in $(seq 1 300); do curl -sf -o /dev/null "http://$1/" && return; sleep 0.2; done
  echo "nothing answers on $1" >&2; exit 1
}

backend_port=$(free_port)
mkdir -p "$workdir/backend"
cat >"$workdir/backend/nginx.conf" <<CONF
worker_processes 1;
pid $workdir/backend/nginx.pid;
error_log $workdir/backend/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $workdir/backend; proxy_temp_path $workdir/backend;
  fastcgi_temp_path $workdir/backend; uwsgi_temp_path $workdir/backend; scgi_temp_path $workdir/backend;
  server { listen 127.0.0.1:$backend_port; location / { return 200 'hello\n'; } }
}
CONF
"$nginx" -p "$workdir/backend" -c "$workdir/backend/nginx.conf" -g 'daemon off;' &
pids+=("$!")
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
