#!/usr/bin/env python3
"""Wake and idle-stop cycles through the gateway, many times over, with real backend programs.

Run by benches/cycles.sh, which builds the gateway and passes its path. Loopback only;
everything this starts is stopped by PID before it exits, pass or fail.

The gateway fronts SERVICES backends, each a `python3 -m http.server` that its `process`
trigger starts on the first request and its `process_stop` stops after IDLE_MS without a
request; requests are held while a backend boots. CLIENTS clients, for SECONDS, each pick a
backend at random, send it one to three requests on one connection, then pause for up to
PAUSE_MS: long enough, often enough, that backends keep being stopped and woken again.

Prints requests, answers by status, latency, starts and stops per backend (from the gateway's
log), and the gateway's RSS, fds and threads before, after the load, and once everything is
idle again. Exits non-zero when a goal is missed: every request answered 200 with no
connection error, every start matched by a stop once idle, no backend program left running
when idle, RSS and fds back near their starting level, and a SIGTERM exit 0 with no program
left behind.
"""

import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from loadkit import Results, free_port, resources, wait_listening

GATEWAY, = sys.argv[1:2]
SERVICES = int(os.environ.get("CYCLES_SERVICES", "6"))
CLIENTS = int(os.environ.get("CYCLES_CLIENTS", "6"))
SECONDS = float(os.environ.get("CYCLES_SECONDS", "60"))
IDLE_MS = int(os.environ.get("CYCLES_IDLE_MS", "800"))
PAUSE_MS = int(os.environ.get("CYCLES_PAUSE_MS", "2500"))
SETTLE = 20  # seconds for the last backends to go idle and be stopped


def children(pid):
    """The PIDs whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def threads(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("Threads:"))


def client(port, stop, results, seed):
    rng = random.Random(seed)
    while not stop.is_set():
        host = f"s{rng.randrange(SERVICES)}.localhost"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(rng.randint(1, 3)):
            started = time.monotonic()
            try:
                conn.request("GET", "/", headers={"Host": host})
                response = conn.getresponse()
                response.read()
                results.answer(response.status, time.monotonic() - started)
            except (OSError, http.client.HTTPException) as e:
                results.error(type(e).__name__, time.monotonic() - started)
                break
        conn.close()
        stop.wait(rng.uniform(0, PAUSE_MS / 1000))


def config(gateway_port, backend_ports, directory):
    services, gateway_services = {}, {}
    for i, port in enumerate(backend_ports):
        services[f"s{i}"] = {
            "url": f"http://127.0.0.1:{port}/",
            "grace_period": "1s",
            "probe_timeout": "300ms",
            "on_down": {"type": "process", "command": "python3",
                        "args": ["-m", "http.server", str(port), "--bind", "127.0.0.1"],
                        "current_dir": directory, "stop_grace": "3s"},
            "on_idle": {"after": f"{IDLE_MS}ms", "trigger": {"type": "process_stop"}},
        }
        gateway_services[f"s{i}"] = {"hold": {"max_wait": "20s", "max_held": 1000}}
    return {
        "gateway": {"listen": f"127.0.0.1:{gateway_port}",
                    "routes": [{"host": f"s{i}.localhost", "service": f"s{i}"}
                               for i in range(len(backend_ports))],
                    "services": gateway_services},
        "services": services,
    }


def main():
    gateway_port = free_port()
    backend_ports = [free_port() for _ in range(SERVICES)]
    directory = tempfile.mkdtemp(prefix="cycles-")
    with open(os.path.join(directory, "index.html"), "w") as f:
        f.write("hello\n")
    config_path = os.path.join(directory, "gateway.json")
    with open(config_path, "w") as f:
        json.dump(config(gateway_port, backend_ports, directory), f)
    log_path = os.path.join(directory, "gateway.log")

    gateway, exit_code, left_running = None, None, []
    try:
        with open(log_path, "w") as log:
            gateway = subprocess.Popen([GATEWAY, "--config", config_path],
                                       stdout=log, stderr=subprocess.STDOUT,
                                       env={**os.environ, "RUST_LOG": "info"})
        wait_listening(gateway_port)
        before = resources(gateway.pid) + (threads(gateway.pid),)

        results, stop = Results(), threading.Event()
        clients = [threading.Thread(target=client, args=(gateway_port, stop, results, seed))
                   for seed in range(CLIENTS)]
        for t in clients:
            t.start()
        time.sleep(SECONDS)
        stop.set()
        for t in clients:
            t.join(timeout=60)
        after = resources(gateway.pid) + (threads(gateway.pid),)

        # Idle: every backend stopped, its program gone, the proxy's idle connections closed.
        give_up = time.monotonic() + SETTLE
        while time.monotonic() < give_up and children(gateway.pid):
            time.sleep(0.2)
        time.sleep(16)  # the proxy's pool closes connections idle for 15 s
        idle = resources(gateway.pid) + (threads(gateway.pid),)
        running_when_idle = children(gateway.pid)

        gateway.send_signal(signal.SIGTERM)
        exit_code = gateway.wait(timeout=60)
    finally:
        if gateway is not None and gateway.poll() is None:
            gateway.kill()
            gateway.wait()
        # Anything still listening on a backend port outlived the gateway.
        for port in backend_ports:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                left_running.append(port)
            except OSError:
                pass

    with open(log_path) as f:
        log = f.read()
    starts = {f"s{i}": 0 for i in range(SERVICES)}
    stops = dict(starts)
    for name in re.findall(r"\b(s\d+) is starting after", log):
        starts[name] += 1
    for name in re.findall(r"\b(s\d+) stopped after", log):
        stops[name] += 1
    print(f"cycles: {SERVICES} backends (python3 http.server), idle stop after {IDLE_MS} ms, "
          f"{CLIENTS} clients for {SECONDS:.0f} s pausing up to {PAUSE_MS} ms")
    print(results.report())
    print(f"  starts {sum(starts.values())} {starts}")
    print(f"  stops  {sum(stops.values())} {stops}")
    print(f"  gateway RSS/fds/threads: before {before[0]} KiB/{before[1]}/{before[2]}, "
          f"after load {after[0]} KiB/{after[1]}/{after[2]}, idle {idle[0]} KiB/{idle[1]}/{idle[2]}")
    print(f"  programs running when idle: {len(running_when_idle)}; exit on SIGTERM: {exit_code}; "
          f"backends left running after exit: {left_running or 'none'}")
    missed = []
    if results.errors or set(results.statuses) != {200}:
        missed.append("every request answered 200, no connection error")
    if starts != stops or sum(starts.values()) < SERVICES:
        missed.append("every start matched by a stop once idle")
    if running_when_idle:
        missed.append("no backend program running when idle")
    if idle[1] > before[1] + 4 or idle[0] > before[0] * 2 + 4096 or idle[2] > before[2] + 2:
        missed.append("RSS, fds and threads back near their starting level")
    if exit_code != 0 or left_running:
        missed.append("SIGTERM exits 0 and leaves no program behind")
    print("cycles: goals " + ("met" if not missed else "MISSED: " + "; ".join(missed)))
    if missed:
        print(f"  the gateway's log: {log_path}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
