#!/usr/bin/env python3
"""Idle closes: the gateway and nginx in front of backends that close idle kept connections.

Run by benches/keepalive.sh, which builds the gateway and passes its path. Loopback only;
everything this starts is stopped by PID before it exits, pass or fail.

For each backend (Node's `http` server with its default keepAliveTimeout of 5 s and with 1 s,
Python's `http.server` over HTTP/1.1 with a 1 s socket timeout), it starts the backend, the
gateway and nginx (upstream `keepalive 32`, default `proxy_next_upstream error timeout`) in
front of it, and runs the same traffic through both proxies at once: CLIENTS clients each, each
sending a GET or a POST with a small body, then waiting a random time around the backend's
idle timeout (4.9-5.1 s for 5 s; scaled for the others), so that the proxies reuse upstream
connections just as the backend closes them. Each client has its own kept connection to its
proxy, and the same seed on both sides.

Prints per backend and proxy: requests, answers by status, connection errors, and the
proxy's own count of failures: for the gateway the backend marked down ("gone"), its on_down
runs (a command trigger that appends a line), and its warnings about the backend; for nginx
its upstream errors (retried or not). Exits non-zero if the gateway answered anything but 200
more often than nginx did.
"""

import http.client
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

from loadkit import Results, free_port, wait_listening

GATEWAY, NGINX = sys.argv[1:3]
CLIENTS = int(os.environ.get("KEEPALIVE_CLIENTS", "6"))
# Seconds of traffic per backend, at most (each client stops at its first request past it).
SECONDS = float(os.environ.get("KEEPALIVE_SECONDS", "60"))
SEED = int(os.environ.get("KEEPALIVE_SEED", "1"))
# How far a pause may be from the backend's idle timeout, as a share of it.
SPREAD = float(os.environ.get("KEEPALIVE_SPREAD", "0.02"))
ONLY = os.environ.get("KEEPALIVE_BACKENDS", "node-5s,node-1s,python-1s").split(",")

NODE = """
const http = require('http');
const server = http.createServer((req, res) => {
  let n = 0;
  req.on('data', (c) => { n += c.length; });
  req.on('end', () => { res.end(`ok ${req.method} ${n}\\n`); });
});
if (process.argv[3]) server.keepAliveTimeout = Number(process.argv[3]);
server.listen(Number(process.argv[2]), '127.0.0.1');
"""

PYTHON = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = float(sys.argv[2])  # closes a connection idle this long

    def answer(self, n):
        body = f"ok {self.command} {n}\\n".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.answer(0)

    def do_POST(self):
        n = int(self.headers.get("content-length", "0"))
        self.answer(len(self.rfile.read(n)))

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

# name: (program, idle timeout in seconds)
BACKENDS = {
    "node-5s": (["node", "{dir}/backend.js", "{port}"], 5.0),
    "node-1s": (["node", "{dir}/backend.js", "{port}", "1000"], 1.0),
    "python-1s": (["python3", "{dir}/backend.py", "{port}", "1"], 1.0),
}


def client(port, rng, idle, deadline, results):
    """Requests until `deadline`, each after a pause of `idle` +- SPREAD."""
    conn = None
    while time.monotonic() < deadline:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        post = rng.random() < 0.5
        body = b"x" * rng.randint(10, 200) if post else None
        pause = idle * rng.uniform(1 - SPREAD, 1 + SPREAD)
        started = time.monotonic()
        try:
            conn.request("POST" if post else "GET", "/", body=body)
            response = conn.getresponse()
            response.read()
            results.answer(response.status, time.monotonic() - started)
        except (OSError, http.client.HTTPException) as e:
            results.error(type(e).__name__, time.monotonic() - started)
            conn.close()
            conn = None
        time.sleep(pause)
    if conn is not None:
        conn.close()


def start(started, argv, **kwargs):
    p = subprocess.Popen(argv, **kwargs)
    started.append(p)
    return p


def run(name, workdir, started):
    program, idle = BACKENDS[name]
    backend_port, gateway_port, nginx_port = free_port(), free_port(), free_port()
    argv = [a.format(dir=workdir, port=backend_port) for a in program]
    start(started, argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(backend_port)

    starts = os.path.join(workdir, f"{name}.starts")
    config = {
        "gateway": {"listen": f"127.0.0.1:{gateway_port}",
                    "routes": [{"path_prefix": "/", "service": "app"}]},
        "services": {"app": {
            "url": f"http://127.0.0.1:{backend_port}/",
            "grace_period": "30s",
            # Counts the starts a backend taken for gone would get.
            "on_down": {"type": "command", "command": "sh",
                        "args": ["-c", f"echo start >> {starts}"]},
        }},
    }
    config_path = os.path.join(workdir, f"{name}.json")
    with open(config_path, "w") as f:
        json.dump(config, f)
    gateway_log = os.path.join(workdir, f"{name}.gateway.log")
    with open(gateway_log, "w") as log:
        start(started, [GATEWAY, "--config", config_path], stdout=subprocess.DEVNULL,
              stderr=log, env={**os.environ, "RUST_LOG": "info,tower_monitor=debug",
                               "NO_COLOR": "1"})

    nginx_dir = os.path.join(workdir, f"{name}.nginx")
    os.mkdir(nginx_dir)
    with open(os.path.join(nginx_dir, "nginx.conf"), "w") as f:
        f.write(f"""
worker_processes 1;
pid {nginx_dir}/nginx.pid;
error_log {nginx_dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {nginx_dir}; proxy_temp_path {nginx_dir};
  fastcgi_temp_path {nginx_dir}; uwsgi_temp_path {nginx_dir}; scgi_temp_path {nginx_dir};
  upstream app {{ server 127.0.0.1:{backend_port}; keepalive 32; }}
  server {{
    listen 127.0.0.1:{nginx_port};
    location / {{ proxy_pass http://app; proxy_http_version 1.1;
                 proxy_set_header Connection ""; }}
  }}
}}
""")
    start(started, [NGINX, "-p", nginx_dir, "-c", os.path.join(nginx_dir, "nginx.conf"),
                    "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(gateway_port)
    wait_listening(nginx_port)

    results = {"gateway": Results(), "nginx": Results()}
    deadline = time.monotonic() + SECONDS
    threads = []
    for which, port in (("gateway", gateway_port), ("nginx", nginx_port)):
        for i in range(CLIENTS):
            # The same seed on both sides: the same methods, bodies and pauses.
            rng = random.Random(SEED * 1000 + i)
            threads.append(threading.Thread(
                target=client, args=(port, rng, idle, deadline, results[which])))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=SECONDS + 120)

    with open(gateway_log) as f:
        log = f.read()
    with open(os.path.join(nginx_dir, "error.log")) as f:
        nginx_log = f.read()
    gone = log.count("the backend is gone; marking it down")
    again = log.count("sending it again on another")
    not_sent = log.count("had closed a kept connection; not sending on it")
    warnings = sum(1 for line in log.splitlines() if " WARN " in line and "service" in line)
    runs = open(starts).read().count("start") if os.path.exists(starts) else 0
    upstream_errors = sum(1 for line in nginx_log.splitlines() if "upstream" in line)
    print(f"{name} (backend closes connections idle {idle:g} s; pauses {idle * (1 - SPREAD):g}-"
          f"{idle * (1 + SPREAD):g} s, {CLIENTS} clients per proxy, {SECONDS:g} s):")
    print(f"  gateway:{results['gateway'].report()[1:]}")
    print(f"    backend marked down {gone}, on_down runs {runs}, warnings {warnings}, "
          f"sent again after an idle close {again}, kept connections found closed before "
          f"a request {not_sent}")
    print(f"  nginx:{results['nginx'].report()[1:]}")
    print(f"    upstream errors logged {upstream_errors}\n")
    return results, nginx_log, log


def not_ok(results):
    return (sum(n for status, n in results.statuses.items() if status != 200)
            + sum(results.errors.values()))


def main():
    workdir = tempfile.mkdtemp(prefix="keepalive-")
    with open(os.path.join(workdir, "backend.js"), "w") as f:
        f.write(NODE)
    with open(os.path.join(workdir, "backend.py"), "w") as f:
        f.write(PYTHON)
    worse = []
    for name in ONLY:
        started = []
        try:
            results, nginx_log, log = run(name, workdir, started)
        finally:
            for p in reversed(started):
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    try:
                        p.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
        if os.environ.get("KEEPALIVE_SHOW_LOGS"):
            print("  nginx's log:\n" + nginx_log + "  the gateway's warnings:\n" + "\n".join(
                line for line in log.splitlines() if " WARN " in line))
        if not_ok(results["gateway"]) > not_ok(results["nginx"]):
            worse.append(name)
    subprocess.run(["rm", "-rf", workdir], check=False)
    print("keepalive: the gateway answers " + (
        "as well as nginx or better" if not worse else "worse than nginx: " + ", ".join(worse)))
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main())
