"""Throughput, latency and CPU cost of the router against nginx as a reverse proxy.

One backend, one load generator, three targets:

- backend: nginx (1 worker) answering a small static body on loopback;
- load: ``wrk -t2 -c50 -d<S>s --latency`` against
  1. the backend directly (the anchor),
  2. dynod's router (``--workers N``, one ``SO_REUSEPORT`` socket each),
  3. nginx as a reverse proxy with upstream keep-alive, N workers and
     ``reuseport`` on its listen, so both proxies spread connections the
     same way.

The targets take turns, ``--rounds`` times (the order rotating each round),
so a noisy neighbour on the machine weighs on all three alike; the figures
printed are medians over the rounds.  Per target: requests/s, p50 and p99
latency, and the proxy processes' CPU time (user + system, from
``/proc/PID/stat``) per request -- on a shared machine CPU per request is
steadier than requests/s.  Then the router's share of nginx's throughput
(goal: at least 0.5) and the p99 latency each proxy adds to the anchor's
(goal: the router's at most twice nginx's).  nginx keeps ``access_log off``;
the router still makes its per-request log line, and sends it to a
``logs.sock`` nobody listens on here.  Any wrk socket error or non-2xx
response fails the run.

Before the load, ``--idle-connections`` (default 10,000) keep-alive
connections are opened from a client process and left idle, and the router's
RSS per connection is printed.  Every process is stopped and every temp file
removed at the end, also on failure.  Needs root, nginx and wrk.

    .venv/bin/python tests/bench/bench_router.py [--workers N] [--duration S]
        [--rounds R] [--idle-connections C]
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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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
  server {{ listen 127.0.0.1:{port} reuseport;
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
    """Run wrk once; returns requests, requests/s, p50 and p99 in milliseconds.

    Exits, printing wrk's report, if any connection failed or any response
    was not a success: a figure made partly of errors would mislead.
    """
    cmd = ["wrk", "-t2", "-c50", f"-d{duration}s", "--latency", "-H", f"Host: {host}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    # wrk prints these lines only when there is something to report.
    for failure in (r"Socket errors: .*", r"Non-2xx or 3xx responses: \d+"):
        found = re.search(failure, out)
        if found:
            raise SystemExit(f"{url}: wrk reported {found.group(0)}\n{out}")

    def number(pattern: str) -> float:
        found = re.search(pattern, out, re.M)
        if found is None:
            raise SystemExit(f"{url}: no {pattern!r} in wrk's report\n{out}")
        return float(found.group(1))

    def pct(p: str) -> float:
        found = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)$", out, re.M)
        if found is None:
            raise SystemExit(f"{url}: no p{p} in wrk's report\n{out}")
        return (
            float(found.group(1))
            * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]
        )

    return {
        "requests": number(r"^\s*(\d+) requests in"),
        "rps": number(r"Requests/sec:\s+([\d.]+)"),
        "p50": pct("50"),
        "p99": pct("99"),
    }


def children(proc: subprocess.Popen[bytes]) -> list[int]:
    """The pids of ``proc``'s children: the router's or nginx's workers."""
    out = subprocess.run(
        ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
    ).stdout
    return [int(p) for p in out.split()]


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time the processes ``pids`` have used so far."""
    total = 0
    for pid in pids:
        # Fields 14 and 15 (utime, stime), counted after the ")" ending the name.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / _TICK


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
    workers = children(router)
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
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="router and nginx proxy workers"
    )
    parser.add_argument(
        "--duration", type=int, default=10, help="seconds of load per target and round"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="turns each target takes; medians reported",
    )
    parser.add_argument(
        "--idle-connections",
        type=int,
        default=10_000,
        help="idle keep-alive connections for the memory figure (0: skip)",
    )
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

        # The targets take turns, the order rotating each round; a short
        # warm-up each first.  CPU is counted for the proxies' workers only.
        targets = [
            ("backend direct (anchor)", backend_port, []),
            (f"dynod router, {args.workers} workers", router_port, children(router)),
            (f"nginx proxy, {args.workers} workers", proxy_port, children(proxy)),
        ]
        names = [t[0] for t in targets]
        for _, port, _ in targets:
            wrk(f"http://127.0.0.1:{port}/", "bench.localhost", 1)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for round_ in range(args.rounds):
            turn = round_ % len(targets)
            for name, port, pids in targets[turn:] + targets[:turn]:
                cpu = cpu_seconds(pids)
                r = wrk(f"http://127.0.0.1:{port}/", "bench.localhost", args.duration)
                r["cpu_us"] = (cpu_seconds(pids) - cpu) / r["requests"] * 1e6
                runs[name].append(r)
        report(args, names, runs)
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(base, ignore_errors=True)


def report(
    args: argparse.Namespace, names: list[str], runs: dict[str, list[dict[str, float]]]
) -> None:
    """Print each target's medians over the rounds, then the two goals."""

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    print(
        f"wrk -t2 -c50 -d{args.duration}s, {args.rounds} rounds (medians), "
        f"{os.cpu_count()} CPUs, loopback"
    )
    print(
        "nginx: access_log off, reuseport, upstream keepalive 128; router: log "
        "line made per request, sent to a logs.sock nobody listens on"
    )
    direct, ours, theirs = names
    print(f"{'target':32} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11}")
    for name in names:
        # The anchor's CPU is the backend's, which every target shares.
        cpu = "-" if name == direct else f"{median(name, 'cpu_us'):.1f}"
        print(
            f"{name:32} {median(name, 'rps'):>9.0f} {median(name, 'p50'):>8.2f}"
            f" {median(name, 'p99'):>8.2f} {cpu:>11}"
        )

    # Ratios within each round, between runs seconds apart, then their median.
    def per_round(f: Callable[[dict[str, float], dict[str, float]], float]) -> float:
        return statistics.median(
            f(a, b) for a, b in zip(runs[ours], runs[theirs], strict=True)
        )

    ratio = per_round(lambda a, b: a["rps"] / b["rps"])
    print(f"router / nginx proxy throughput: {ratio:.2f} (goal >= 0.50)")
    added_ours = median(ours, "p99") - median(direct, "p99")
    added_theirs = median(theirs, "p99") - median(direct, "p99")
    # The anchor runs the backend flat out, so its own p99 can exceed a
    # proxy's: then nginx adds nothing measurable and there is no ratio.
    added = (
        f"{added_ours / added_theirs:.2f}x"
        if added_theirs > 0
        else "n/a (nginx's p99 is below the anchor's)"
    )
    print(
        f"added p99 latency: router {added_ours:.2f} ms, nginx {added_theirs:.2f} ms,"
        f" router/nginx {added} (goal <= 2x); p99 router/nginx"
        f" {median(ours, 'p99') / median(theirs, 'p99'):.2f}x"
    )
    cpu_ratio = per_round(lambda a, b: a["cpu_us"] / b["cpu_us"])
    print(
        f"CPU per request: router {median(ours, 'cpu_us'):.1f} us, nginx"
        f" {median(theirs, 'cpu_us'):.1f} us, router/nginx {cpu_ratio:.2f}x"
    )


if __name__ == "__main__":
    main()
