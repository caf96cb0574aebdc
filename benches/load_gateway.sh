#!/usr/bin/env bash
# Load run: the same backend reached directly, through nginx as a reverse proxy, and through the
# gateway (backend cached up), each driven by the same bounded wrk run, in the order
# A B C A B C, on 127.0.0.1 only. Prints req/s, p99 latency and CPU time per request of each
# proxy (user and system apart: the kernel's socket work is most of it), and the gateway/nginx
# ratios.
#
# Run: bash benches/load_gateway.sh   (about a minute after the build; installs nginx and wrk from
#      Debian's packages if missing)
# Knobs: DURATION (default 8s per run), CONNECTIONS (default 32), THREADS (wrk threads, default 1),
#        GATEWAY_BIN (a gateway binary to run instead of building this tree's, to compare builds).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}

source benches/gateway_common.sh
need wrk nginx-light
gateway_bin=$(gateway_program)

# The backend: nginx answering a short text itself, one worker, the same for all three paths.
backend_port=$(free_port)
start_nginx backend 1 "server { listen 127.0.0.1:$backend_port; location / { return 200 'hello\n'; } }"
backend=127.0.0.1:$backend_port
wait_for "$backend"

# nginx as a reverse proxy, with kept-alive upstream connections.
nginx_port=$(free_port)
start_nginx proxy auto "upstream app { server $backend; keepalive 64; }
  server { listen 127.0.0.1:$nginx_port; location / { proxy_pass http://app; proxy_http_version 1.1;
    proxy_set_header Connection \"\"; proxy_set_header Host \$host;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; } }"
nginx_proxy_pid=${pids[-1]}
via_nginx=127.0.0.1:$nginx_port
wait_for "$via_nginx"

# The gateway, with the backend cached up for the whole run.
gateway_port=$(free_port)
cat >"$workdir/gateway.json" <<JSON
{ "gateway": { "listen": "127.0.0.1:$gateway_port", "routes": [ { "service": "app" } ] },
  "services": { "app": { "url": "http://$backend/", "grace_period": "1h" } } }
JSON
RUST_LOG=warn "$gateway_bin" --config "$workdir/gateway.json" >"$workdir/gateway.log" 2>&1 &
pids+=("$!")
gateway_pid=${pids[-1]}
via_gateway=127.0.0.1:$gateway_port
wait_for "$via_gateway"

# CPU time (clock ticks: "user system") of a process and its children-by-PPID (nginx workers).
cpu_ticks() {
  local user=0 system=0 pid u s
  for pid in $1 $(pgrep -P "$1" || true); do
    read -r u s < <(awk '{print $14, $15}' "/proc/$pid/stat")
    user=$((user + u)); system=$((system + s))
  done
  echo "$user $system"
}

# One wrk run: prints "req/s p99_ms requests".
run() {
  local out
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "http://$1/")
  local rps p99 requests
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "$rps $p99 $requests"
}

results="$workdir/results"
: >"$results"
for round in 1 2; do
  for which in direct nginx gateway; do
    case $which in
      direct) addr=$backend; pid="" ;;
      nginx) addr=$via_nginx; pid=$nginx_proxy_pid ;;
      gateway) addr=$via_gateway; pid=$gateway_pid ;;
    esac
    user0=0; system0=0; [ -n "$pid" ] && read -r user0 system0 <<<"$(cpu_ticks "$pid")"
    read -r rps p99 requests <<<"$(run "$addr")"
    user1=0; system1=0; [ -n "$pid" ] && read -r user1 system1 <<<"$(cpu_ticks "$pid")"
    echo "$which $rps $p99 $requests $((user1 - user0)) $((system1 - system0))" >>"$results"
    printf 'round %d  %-8s %10s req/s  p99 %8s\n' "$round" "$which" "$rps" "$p99"
  done
done

python3 - "$results" "$(getconf CLK_TCK)" <<'PY'
import sys, collections
ticks_per_s = float(sys.argv[2])
def ms(text):
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    which, rps, p99, requests, user, system = line.split()
    runs[which].append((float(rps), ms(p99), int(requests), int(user), int(system)))
mean = {}
for which in ("direct", "nginx", "gateway"):
    r = runs[which]
    rps = sum(x[0] for x in r) / len(r)
    p99 = sum(x[1] for x in r) / len(r)
    per_request = lambda i: sum(x[i] for x in r) / ticks_per_s * 1e6 / sum(x[2] for x in r)
    user_us, system_us = per_request(3), per_request(4)
    cpu_us = user_us + system_us
    mean[which] = (rps, p99, cpu_us)
    cpu = (
        f"{cpu_us:6.1f} µs CPU/request (user {user_us:.1f}, system {system_us:.1f})"
        if which != "direct"
        else ""
    )
    print(f"mean {which:8s} {rps:10,.0f} req/s  p99 {p99:7.2f} ms  {cpu}")
g, n = mean["gateway"], mean["nginx"]
print(f"gateway/nginx: {g[0] / n[0]:.2f}× the req/s (goal >= 1), {g[2] / n[2]:.2f}× the CPU per request (goal <= 1), p99 {g[1] / n[1]:.2f}×")
PY
