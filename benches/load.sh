#!/usr/bin/env bash
# Load run: the hyper example served with and without the monitor layer (backend cached up),
# driven in turn by the same bounded wrk run, A B A B, on 127.0.0.1 only.
#
# Run: bash benches/load.sh        (about a minute; installs wrk from Debian's packages if missing)
# Knobs: DURATION (default 8s per run), CONNECTIONS (default 32), THREADS (wrk threads, default 1).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}

if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk from Debian's packages"
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq wrk
  else sudo apt-get update -qq && sudo apt-get install -y -qq wrk; fi
fi

cargo build --release --quiet --example hyper
bin=${CARGO_TARGET_DIR:-target}/release/examples/hyper
workdir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$workdir"
}
trap cleanup EXIT

# Starts the server with the given flags; sets `addr` once it listens. Not called in `$(..)`:
# a subshell's `pids` would be lost, and the servers left running at exit.
start() {
  local log="$workdir/$1.log"; shift
  "$bin" --port 0 "$@" >"$log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 100); do
    addr=$(sed -n 's#^listening on http://\([^ ]*\).*#\1#p' "$log")
    if [ -n "$addr" ]; then return; fi
    sleep 0.1
  done
  echo "server did not start: $(cat "$log")" >&2; exit 1
}

start plain --no-monitor; plain=$addr
start monitored; monitored=$addr
curl -sf "http://$plain/" >/dev/null && curl -sf "http://$monitored/" >/dev/null

rps() {
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "http://$1/" | awk '/^Requests\/sec:/ {print $2}'
}

declare -a without with
for round in 1 2; do
  without+=("$(rps "$plain")");   echo "round $round  without layer: ${without[-1]} req/s"
  with+=("$(rps "$monitored")");  echo "round $round  with layer:    ${with[-1]} req/s"
done

python3 - "${without[@]}" "${with[@]}" <<'PY'
import sys
v = [float(x) for x in sys.argv[1:]]
a, b = v[:2], v[2:]
ma, mb = sum(a) / len(a), sum(b) / len(b)
print(f"mean without layer: {ma:,.0f} req/s")
print(f"mean with layer:    {mb:,.0f} req/s")
print(f"ratio with/without: {mb / ma:.3f}  (goal >= 0.97)")
PY
