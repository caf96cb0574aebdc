#!/usr/bin/env python3
"""Chaos load through the gateway: a bounded load while the backend is killed and restarted.

Run by benches/chaos.sh, which builds the programs and passes their paths. Loopback only;
everything this starts is stopped by PID before it exits, pass or fail.

Prints requests, answers by status, latency p50/p99/max, connection errors, and the gateway's
RSS and open file descriptors before the load, after it, and after an idle pause. Exits non-zero
when a goal is missed: every request answered, no 500, no connection reset, max latency at most
the probe timeout + 100 ms, RSS and fds back near their starting level after idle.
"""

import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

from loadkit import Results, free_port, resources, wait_listening

GATEWAY, = sys.argv[1:2]
CLIENTS = int(os.environ.get("CHAOS_CLIENTS", "16"))
KILLS = int(os.environ.get("CHAOS_KILLS", "5"))
PERIOD = float(os.environ.get("CHAOS_PERIOD", "4"))      # seconds between kills
DOWN_FOR = float(os.environ.get("CHAOS_DOWN_FOR", "1"))  # seconds the backend stays dead
PROBE_TIMEOUT_MS = 500
IDLE_WAIT = 20


def client(port, stop, results):
    conn = None
    while not stop.is_set():
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        started = time.monotonic()
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            results.answer(response.status, time.monotonic() - started)
            if response.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except ConnectionResetError:
            results.error("reset", time.monotonic() - started)
            conn = None
        except (OSError, http.client.HTTPException) as e:
            results.error(type(e).__name__, time.monotonic() - started)
            conn = None
    if conn is not None:
        conn.close()


def main():
    backend_port, gateway_port = free_port(), free_port()
    config = {
        "gateway": {"listen": f"127.0.0.1:{gateway_port}",
                    "routes": [{"path_prefix": "/", "service": "app"}]},
        "services": {"app": {"url": f"http://127.0.0.1:{backend_port}/",
                             "grace_period": "1s",
                             "probe_timeout": f"{PROBE_TIMEOUT_MS}ms"}},
    }
    started = []
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
        config_path = f.name

    def start_backend():
        # The demo backend boots in 1.5 s and exits when its stdin closes: keep a pipe open.
        p = subprocess.Popen([GATEWAY, "--backend", f"127.0.0.1:{backend_port}"],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        started.append(p)
        wait_listening(backend_port)
        return p

    try:
        backend = start_backend()
        gateway = subprocess.Popen([GATEWAY, "--config", config_path],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env={**os.environ, "RUST_LOG": "warn"})
        started.append(gateway)
        wait_listening(gateway_port)
        before = resources(gateway.pid)

        results, stop = Results(), threading.Event()
        threads = [threading.Thread(target=client, args=(gateway_port, stop, results))
                   for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        for _ in range(KILLS):
            time.sleep(PERIOD - DOWN_FOR)
            backend.send_signal(signal.SIGKILL)
            backend.wait()
            time.sleep(DOWN_FOR)
            backend = start_backend()
        time.sleep(PERIOD - DOWN_FOR)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        after = resources(gateway.pid)
        # Idle connections to the backend are closed after 15 s (the proxy's pool).
        time.sleep(IDLE_WAIT)
        idle = resources(gateway.pid)
    finally:
        for p in started:
            if p.poll() is None:
                p.kill()
                p.wait()
        os.unlink(config_path)

    print(f"chaos: {CLIENTS} clients, backend killed and restarted {KILLS} times "
          f"(every {PERIOD} s, down {DOWN_FOR} s)")
    print(results.report())
    print(f"  gateway RSS/fds: before {before[0]} KiB/{before[1]}, after load {after[0]} KiB/"
          f"{after[1]}, after {IDLE_WAIT} s idle {idle[0]} KiB/{idle[1]}")
    missed = []
    if results.errors:
        missed.append("every request answered, no reset")
    if results.statuses.get(500):
        missed.append("no 500")
    if results.max_latency_ms() > PROBE_TIMEOUT_MS + 100:
        missed.append(f"max latency <= {PROBE_TIMEOUT_MS + 100} ms")
    if idle[1] > before[1] + 4 or idle[0] > before[0] * 2 + 4096:
        missed.append("RSS and fds back to their starting level")
    print("chaos: goals " + ("met" if not missed else "MISSED: " + "; ".join(missed)))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
