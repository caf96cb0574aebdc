# Shared by the gateway scripts (`load_gateway.sh`, `callgrind_gateway.sh`); sourced, not run.
# Installs what is missing from Debian's packages, builds the gateway (or takes GATEWAY_BIN),
# and gives: a work folder removed at exit, the PIDs started (killed at exit), free_port,
# wait_for ADDR, and start_nginx NAME WORKERS HTTP_BLOCK. On 127.0.0.1 only.

# Installs the Debian packages named whose command (the part before `-light`) is missing.
need() {
  local missing=() package command
  for package in "$@"; do
    command=${package%-light}
    command -v "$command" >/dev/null 2>&1 || [ -x "/usr/sbin/$command" ] || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} from Debian's packages"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# The gateway program: GATEWAY_BIN (to compare two builds in turns), or this tree's release build.
gateway_program() {
  if [ -z "${GATEWAY_BIN:-}" ]; then
    cargo build --release --quiet --features gateway --bin tower-monitor-gateway
  fi
  echo "${GATEWAY_BIN:-${CARGO_TARGET_DIR:-target}/release/tower-monitor-gateway}"
}

workdir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$workdir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits (up to 60 s: a gateway under valgrind is slow to start) until ADDR answers.
wait_for() {
  for _ in $(seq 1 300); do curl -sf -o /dev/null "http://$1/" && return; sleep 0.2; done
  echo "nothing answers on $1" >&2; exit 1
}

# Starts nginx in the foreground (its master's PID is tracked) with the `http` block given.
start_nginx() {
  local name=$1 workers=$2 http=$3
  local nginx; nginx=$(command -v nginx || echo /usr/sbin/nginx)
  mkdir -p "$workdir/$name"
  cat >"$workdir/$name/nginx.conf" <<CONF
worker_processes $workers;
pid $workdir/$name/nginx.pid;
error_log $workdir/$name/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $workdir/$name; proxy_temp_path $workdir/$name;
  fastcgi_temp_path $workdir/$name; uwsgi_temp_path $workdir/$name; scgi_temp_path $workdir/$name;
  $http
}
CONF
  "$nginx" -p "$workdir/$name" -c "$workdir/$name/nginx.conf" -g 'daemon off;' &
  pids+=("$!")
}
