"""Dyno manager figures on a real daemon: crash to replacement, scale to 50,
dynod memory per dyno, and failed requests and duration of each rollout kind.

Run as root: ``.venv/bin/python tests/bench/bench_manager_lifecycle.py``.
The anchor measured in the same run is a plain dyno start (``ps:scale
worker=1`` to up), so figures can be compared across noisy machines.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.daemon import EXAMPLE_APP, Daemon, make_daemon
from tests.support.load import LoadLoop

APP = "bench"


def _stamp(line: str) -> float:
    return datetime.fromisoformat(line.split(" ", 1)[0]).timestamp()


def _dyno_pids(d: Daemon, name: str) -> list[int]:
    """Host pids of the processes whose environment says DYNO=name."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cgroup = Path(f"/proc/{pid}/cgroup").read_text()
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if d.instance in cgroup and f"DYNO={name}\0".encode() in env:
            found.append(int(pid))
    return found


def _wait(check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise SystemExit("timed out")


def _ps(d: Daemon) -> list[dict[str, object]]:
    return list(d.api("GET", f"/apps/{APP}/dynos")[1])


def crash_to_running(d: Daemon, rounds: int = 15) -> list[float]:
    """Seconds from a worker's exit to its replacement up, first crash each time."""
    d.ctl("ps:scale", "-a", APP, "web=0", "worker=1")
    _wait(lambda: [x["state"] for x in _ps(d)] == ["up"])
    gaps = []
    for _ in range(rounds):
        for pid in _dyno_pids(d, "worker.1"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        time.sleep(0.5)
        lines = d.ctl("logs", "-a", APP, "-s", "dynod", "-n", "50").stdout
        lines = [x for x in lines.splitlines() if "[worker.1]" in x]
        exited = max(i for i, x in enumerate(lines) if "Process exited" in x)
        up = [x for x in lines[exited:] if "from starting to up" in x]
        gaps.append(_stamp(up[0]) - _stamp(lines[exited]))
        # A manual restart resets the back-off, so every round is a first crash.
        d.ctl("ps:restart", "-a", APP, "worker")
        time.sleep(0.3)
    return gaps


def scale_50(d: Daemon) -> float:
    d.ctl("ps:scale", "-a", APP, "worker=0", "web=1")
    _wait(lambda: [x["state"] for x in _ps(d)] == ["up"])
    start = time.monotonic()
    d.ctl("ps:scale", "-a", APP, "web=50")
    _wait(lambda: sum(x["state"] == "up" for x in _ps(d)) == 50, 120)
    return time.monotonic() - start


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def rollouts(d: Daemon, tmp: Path) -> list[tuple[str, int, int, float]]:
    d.ctl("ps:scale", "-a", APP, "web=2", "worker=0")
    _wait(lambda: [x["state"] for x in _ps(d)] == ["up", "up"])
    changed = tmp / "app"
    shutil.copytree(EXAMPLE_APP, changed)
    app_py = changed / "app.py"
    app_py.write_text(app_py.read_text().replace("Hello from", "Howdy from"))
    kinds = [
        ("deploy", ["deploy", "-a", APP, str(changed)]),
        ("config:set", ["config:set", "-a", APP, "GREETING=hi"]),
        ("rollback", ["rollback", "-a", APP]),
        ("ps:restart", ["ps:restart", "-a", APP]),
    ]
    out = []
    for kind, args in kinds:
        before = {x["id"] for x in _ps(d)}
        with LoadLoop(d.http_port, f"{APP}.localhost") as load:
            time.sleep(0.5)
            start = time.monotonic()
            d.ctl(*args)
            _wait(
                lambda b=before: (
                    not {x["id"] for x in _ps(d)} & b
                    and all(x["state"] == "up" for x in _ps(d))
                    and len(_ps(d)) == 2
                ),
                120,
            )
            took = time.monotonic() - start
            time.sleep(1.0)
        result = load.stop()
        out.append((kind, result.requests, len(result.failures), took))
    return out


def main() -> None:
    stacks = Path(tempfile.mkdtemp(prefix="dynod-bench-stacks-"))
    base = Path(tempfile.mkdtemp(prefix="dynod-bench-"))
    d = make_daemon(base, stacks)
    try:
        d.start()
        d.ctl("apps:create", APP)
        d.ctl("deploy", "-a", APP, str(EXAMPLE_APP))

        # Anchor: one worker dyno from scale to up.
        d.ctl("ps:scale", "-a", APP, "web=0")
        start = time.monotonic()
        d.ctl("ps:scale", "-a", APP, "worker=1")
        _wait(lambda: [x["state"] for x in _ps(d)] == ["up"])
        anchor = time.monotonic() - start
        print(f"anchor: ps:scale worker=1 to up        {anchor * 1000:7.0f} ms")

        gaps = sorted(crash_to_running(d))
        p95 = gaps[min(len(gaps) - 1, int(len(gaps) * 0.95))]
        print(
            f"crash -> replacement up (first crash)  median "
            f"{statistics.median(gaps) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms "
            f"({len(gaps)} rounds)"
        )

        assert d.proc is not None
        idle_kb = rss_kb(d.proc.pid)
        took = scale_50(d)
        time.sleep(2)
        busy_kb = rss_kb(d.proc.pid)
        print(f"ps:scale web=50 to all up             {took:7.2f} s")
        print(
            f"dynod RSS: 1 dyno {idle_kb / 1024:.1f} MB, 50 dynos "
            f"{busy_kb / 1024:.1f} MB -> {(busy_kb - idle_kb) / 49:.0f} KB per dyno"
        )

        for kind, requests, failed, secs in rollouts(d, base):
            print(
                f"rollout {kind:<11} {failed} failed of {requests} requests, "
                f"rollout {secs:5.2f} s"
            )
    finally:
        d.destroy()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(stacks, ignore_errors=True)


if __name__ == "__main__":
    main()
