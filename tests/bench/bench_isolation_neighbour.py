"""A neighbour's web latency while one dyno misbehaves, against idle.

Run as root: ``.venv/bin/python tests/bench/bench_isolation_neighbour.py [SECONDS]``.

A real daemon runs two apps.  The neighbour's web dyno is asked for ``/``
through the router, one request after another on a keep-alive connection, for
SECONDS (default 5) per phase: first idle (the anchor), then while a one-off of
the other app runs a CPU hog (as many busy processes as the host has CPUs,
plus two), a fork bomb (up to its pids limit, held) and a memory bomb (a child
that allocates until the OOM killer takes it, over and over).  Prints p50,
p99 and max per phase.
"""

from __future__ import annotations

import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.daemon import EXAMPLE_APP, VENV_BIN, Daemon, make_daemon

HOGS = {
    "cpu hog": (
        "import os, time\n"
        f"for _ in range({(os.cpu_count() or 1) + 2}):\n"
        "    if os.fork() == 0:\n"
        "        end = time.monotonic() + 600\n"
        "        while time.monotonic() < end: pass\n"
        "time.sleep(600)\n"
    ),
    "fork bomb": (
        "import os, time\n"
        "while True:\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(600); os._exit(0)\n"
        "    except OSError:\n"
        "        time.sleep(0.001)\n"
    ),
    # A child allocates until the OOM killer takes it, and again, and again.
    "memory bomb": (
        "import os\n"
        "while True:\n"
        "    if os.fork() == 0:\n"
        "        chunks = []\n"
        "        while True:\n"
        "            chunks.append(bytearray(16 * 1024 * 1024))\n"
        "    os.wait()\n"
    ),
}


def latencies(daemon: Daemon, seconds: float) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", daemon.http_port, timeout=10)
    took: list[float] = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            started = time.monotonic()
            conn.request("GET", "/", headers={"Host": "neighbour.localhost"})
            response = conn.getresponse()
            response.read()
            took.append((time.monotonic() - started) * 1000)
            if response.status != 200:
                raise SystemExit(f"the neighbour answered {response.status}")
    finally:
        conn.close()
    return took


def line(label: str, took: list[float]) -> str:
    ordered = sorted(took)
    p99 = ordered[max(0, round(0.99 * len(ordered)) - 1)]
    return (
        f"  {label:<12} {len(took):6d} requests   p50 {statistics.median(took):6.2f} ms"
        f"   p99 {p99:7.2f} ms   max {ordered[-1]:7.2f} ms"
    )


def stop_one_offs(daemon: Daemon) -> None:
    """Stop the hog app's one-offs and wait until they are gone."""
    for _ in range(100):
        runs = [
            d["name"]
            for d in daemon.ctl_json("ps", "-a", "hog")
            if d["name"].startswith("run.")
        ]
        if not runs:
            return
        for name in runs:
            daemon.ctl("ps:stop", name, "-a", "hog", check=False)
        time.sleep(0.2)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    base = Path(tempfile.mkdtemp(prefix="dynod-bench-"))
    stacks = Path(tempfile.mkdtemp(prefix="dynod-bench-stacks-"))
    daemon = make_daemon(base, stacks)
    rows = []
    try:
        daemon.start()
        for app in ("neighbour", "hog"):
            daemon.ctl("apps:create", app)
            daemon.ctl("deploy", "-a", app, str(EXAMPLE_APP))
        daemon.wait_for("neighbour", "/", "Hello from web.1")
        rows.append(line("idle", latencies(daemon, seconds)))
        dynoctl = str(VENV_BIN / "dynoctl")
        for label, code in HOGS.items():
            hog = subprocess.Popen(
                [dynoctl, "run", "-a", "hog", "--no-tty", "--", "python3", "-c", code],
                env=daemon.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                time.sleep(1.0)  # the hog is running by now
                rows.append(line(label, latencies(daemon, seconds)))
            finally:
                hog.kill()
                hog.wait()
                stop_one_offs(daemon)
    finally:
        daemon.destroy()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(stacks, ignore_errors=True)
    print(f"neighbour web latency through the router, {seconds:.0f} s per phase")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
