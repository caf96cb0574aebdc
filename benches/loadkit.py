"""What the load scripts under benches/ share: ports, waiting for a listener, a process's RSS
and fds, and the tally of what the clients saw. Loopback only."""

import os
import socket
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, within=30.0):
    give_up = time.monotonic() + within
    while time.monotonic() < give_up:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {within} s")


def resources(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds


class Results:
    def __init__(self):
        self.lock = threading.Lock()
        self.statuses = {}
        self.errors = {}
        self.latencies = []

    def answer(self, status, seconds):
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.latencies.append(seconds)

    def error(self, kind, seconds):
        with self.lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1
            self.latencies.append(seconds)

    def max_latency_ms(self):
        return max(self.latencies) * 1e3

    def report(self):
        """Two lines: requests, answers by status and connection errors; the latency."""
        lat = sorted(self.latencies)
        pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3
        total = sum(self.statuses.values()) + sum(self.errors.values())
        return (f"  requests {total}; answers by status {dict(sorted(self.statuses.items()))}; "
                f"connection errors {self.errors or 'none'}\n"
                f"  latency p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms, max {lat[-1] * 1e3:.1f} ms")
