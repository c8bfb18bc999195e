"""Throughput and latency of the router against nginx as a reverse proxy.

One run, one backend, one load generator:

- backend: nginx (1 worker) answering a small static body on loopback;
- load: ``wrk -t2 -c50 -d10s --latency`` against, in turn,
  1. the backend directly (the anchor),
  2. dynod's router (``--workers N``),
  3. nginx as a reverse proxy with upstream keep-alive and N workers.

Prints requests/s and p50/p99 latency per target, and the router's share of
nginx's throughput (goal: at least 0.5) and the latency each proxy adds at
p99 (goal: the router's at most twice nginx's).  Then ``--idle-connections``
(default 10,000) keep-alive connections are opened from a client process and
left idle, and the router's RSS per connection is printed.  Every process is
stopped and every temp file removed at the end, also on failure.

    .venv/bin/python tests/bench/bench_router.py [--workers N] [--duration S]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BODY = "hello from the bench backend\n"

_NGINX_COMMON = """daemon off;
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  {body}
}}
"""
_BACKEND = """server {{ listen 127.0.0.1:{port};
    location / {{ default_type text/plain; return 200 "{text}"; }} }}"""
_PROXY = """upstream backend {{ server 127.0.0.1:{backend}; keepalive 128; }}
  server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://backend; proxy_http_version 1.1;
                 proxy_set_header Connection ""; }} }}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process {proc.args!r} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port} after 10 s")


def start_nginx(workdir: Path, workers: int, body: str) -> subprocess.Popen[bytes]:
    workdir.mkdir()
    conf = workdir / "nginx.conf"
    conf.write_text(_NGINX_COMMON.format(workers=workers, dir=workdir, body=body))
    return subprocess.Popen(["nginx", "-c", str(conf), "-p", str(workdir)])


def wrk(url: str, host: str, duration: int) -> dict[str, float]:
    """Run wrk once; returns requests/s, p50 and p99 in milliseconds."""
    cmd = ["wrk", "-t2", "-c50", f"-d{duration}s", "--latency", "-H", f"Host: {host}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} failed responses\n{out}")

    def pct(p: str) -> float:
        value, unit = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)$", out, re.M).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {"rps": rps, "p50": pct("50"), "p99": pct("99")}


_IDLE_CLIENT = """
import resource, socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
request = b"GET / HTTP/1.1\\r\\nHost: bench.localhost\\r\\n\\r\\n"
socks = []
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(request)
    socks.append(s)
for s in socks:
    data = b""
    while not data.endswith(b"bench backend"):
        data += s.recv(4096)
print("open", flush=True)
sys.stdin.read()
"""


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def idle_memory(router: subprocess.Popen[bytes], port: int, count: int) -> None:
    """Open ``count`` keep-alive connections, one request each, and leave them
    idle; print the router workers' RSS growth per connection."""
    workers = [
        int(p)
        for p in subprocess.run(
            ["pgrep", "-P", str(router.pid)], capture_output=True, text=True
        ).stdout.split()
    ]
    before = rss_kib(workers)
    client = subprocess.Popen(
        [sys.executable, "-c", _IDLE_CLIENT, str(port), str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert client.stdout is not None
        if client.stdout.readline().strip() != b"open":
            raise SystemExit("the idle-connection client failed")
        time.sleep(0.5)
        after = rss_kib(workers)
    finally:
        stop(client)
    per = (after - before) * 1024 / count
    print(
        f"{count} idle keep-alive connections: router RSS {before / 1024:.1f} MiB"
        f" -> {after / 1024:.1f} MiB, {per / 1024:.1f} KiB per connection"
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--idle-connections", type=int, default=10_000)
    args = parser.parse_args()

    # The router inherits this: it must hold the idle connections.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    base = Path(tempfile.mkdtemp(prefix="dynod-bench-router-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # The backend, and nginx proxying to it.
        backend_port, proxy_port, router_port = free_port(), free_port(), free_port()
        backend = start_nginx(
            base / "backend", 1, _BACKEND.format(port=backend_port, text=BODY.strip())
        )
        procs.append(backend)
        proxy = start_nginx(
            base / "proxy",
            args.workers,
            _PROXY.format(backend=backend_port, port=proxy_port),
        )
        procs.append(proxy)

        # dynod's router, with a table pointing at the same backend.
        run_dir = base / "router"
        run_dir.mkdir()
        table = {
            "version": 1,
            "apps": {
                "bench": {
                    "hosts": ["bench.localhost"],
                    "state": "running",
                    "dynos": [
                        {"name": "web.1", "addr": "127.0.0.1", "port": backend_port}
                    ],
                }
            },
        }
        (run_dir / "routes.json").write_text(json.dumps(table))
        router = subprocess.Popen(
            [
                sys.executable, "-m", "dynod.router",
                "--instance", "dt" + secrets.token_hex(3)[:5],
                "--run-dir", str(run_dir), "--bind", "127.0.0.1",
                "--http-port", str(router_port), "--workers", str(args.workers),
            ],
            cwd=ROOT, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(router)
        for port, proc in (
            (backend_port, backend),
            (proxy_port, proxy),
            (router_port, router),
        ):
            wait_port(port, proc)

        # Memory of the fresh router holding many idle keep-alive connections.
        if args.idle_connections:
            idle_memory(router, router_port, args.idle_connections)

        # Each target in turn, under the same load; a short warm-up first.
        targets = [
            ("backend direct (anchor)", backend_port),
            (f"dynod router, {args.workers} workers", router_port),
            (f"nginx proxy, {args.workers} workers", proxy_port),
        ]
        results = {}
        for name, port in targets:
            url = f"http://127.0.0.1:{port}/"
            wrk(url, "bench.localhost", 1)
            results[name] = wrk(url, "bench.localhost", args.duration)

        print(f"wrk -t2 -c50 -d{args.duration}s, {os.cpu_count()} CPUs, loopback")
        print(f"{'target':32} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
        for name, r in results.items():
            print(f"{name:32} {r['rps']:>10.0f} {r['p50']:>8.2f} {r['p99']:>8.2f}")
        direct, ours, theirs = (results[t[0]] for t in targets)
        ratio = ours["rps"] / theirs["rps"]
        print(f"router / nginx proxy throughput: {ratio:.2f} (goal >= 0.50)")
        added_ours = ours["p99"] - direct["p99"]
        added_theirs = theirs["p99"] - direct["p99"]
        print(
            f"added p99 latency: router {added_ours:.2f} ms, nginx "
            f"{added_theirs:.2f} ms (goal: router <= 2x nginx)"
        )
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
