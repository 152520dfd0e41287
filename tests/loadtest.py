"""A loopback load test for the service: N concurrent clients x M requests, bounded in count and
time, with latency percentiles. Used by the test suite and by bench/serve_bench.py; not part of the
installed package."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)   # transport errors and non-200 answers
    wrong: int = 0                                      # 200 answers with an unexpected label
    seconds: float = 0.0
    stopped_by_deadline: bool = False

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + len([e for e in self.errors if e.startswith("transport")])

    def summary(self) -> str:
        return (f"{self.requests} requests in {self.seconds:.1f} s ({self.requests / max(self.seconds, 1e-9):.1f}/s), "
                f"errors {len(self.errors)}, p50 {self.pct(50):.1f} ms, p95 {self.pct(95):.1f} ms, "
                f"p99 {self.pct(99):.1f} ms")


def free_socket(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


@contextmanager
def server_in_thread(app, host: str = "127.0.0.1", timeout: float = 60.0):
    """A real uvicorn server for ``app`` on a free loopback port, in a daemon thread; yields its URL."""
    import uvicorn  # optional at import: uvicorn, only when serving

    sock = free_socket(host)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_keep_alive=30))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        if not thread.is_alive() or time.monotonic() - t0 > timeout:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@contextmanager
def server_in_subprocess(model: str, extra_args: list[str] | None = None, timeout: float = 180.0):
    """``wardrobe serve MODEL`` in its own process on a free loopback port; yields its URL."""
    import httpx  # optional: httpx, only for the loopback load test

    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()  # the server binds it again; a loopback port freed a moment ago is not reused that fast
    proc = subprocess.Popen([sys.executable, "-m", "wardrobe.cli", "serve", str(model), "--host", "127.0.0.1",
                             "--port", str(port), *(extra_args or [])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"wardrobe serve exited: {proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - t0 > timeout:
                raise RuntimeError("wardrobe serve did not answer /healthz in time")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_load(url: str, payload: bytes, filename: str = "photo.jpg", clients: int = 8, requests: int = 200,
             expect_label: str | None = None, deadline_s: float = 600.0, timeout_s: float = 30.0) -> LoadResult:
    """``clients`` threads, each sending ``requests`` POST /v1/predict one after another (keep-alive)."""
    import httpx  # optional: httpx, only for the loopback load test

    res = LoadResult()
    lock = threading.Lock()
    stop_at = time.monotonic() + deadline_s

    def client():
        with httpx.Client(base_url=url, timeout=timeout_s) as c:
            for _ in range(requests):
                if time.monotonic() > stop_at:
                    res.stopped_by_deadline = True
                    return
                t = time.perf_counter()
                try:
                    r = c.post("/v1/predict", files={"files": (filename, payload, "image/jpeg")})
                except httpx.HTTPError as exc:
                    with lock:
                        res.errors.append(f"transport: {type(exc).__name__}")
                    continue
                ms = (time.perf_counter() - t) * 1000
                with lock:
                    res.statuses[r.status_code] += 1
                    if r.status_code != 200:
                        res.errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                        continue
                    res.latencies_ms.append(ms)
                    if expect_label is not None and r.json()["results"][0]["label"] != expect_label:
                        res.wrong += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=deadline_s + timeout_s + 5)
    res.seconds = time.perf_counter() - t0
    return res
