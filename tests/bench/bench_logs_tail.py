"""``dynoctl logs -n 1500`` on an app with 1 GB of history.

Run as root: ``.venv/bin/python tests/bench/bench_logs_tail.py [GB]``.

The history is written straight into the app's segment files while the daemon
is stopped (a day of a busy app in seconds), then the daemon starts and the
command is timed end to end, as a user runs it, and the API call alone.
Anchor: ``tail -n 1500`` of the last segment file, and ``dynoctl apps`` (the
CLI's own start-up), in the same run.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from bench_logs_common import APP, daemon, history_dir

from tests.support.daemon import VENV_BIN, Daemon

RUNS = 15


def fill(d: Daemon, total: int) -> None:
    """Write ``total`` bytes of history in 64 MiB segments, then restart dynod."""
    directory = history_dir(d)
    d.stop()
    line = (
        b"2026-12-03T18:12:23.123456+00:00 app[web.1]: filler %09d " + b"y" * 60 + b"\n"
    )
    block_lines = 10000
    segment, seq, written, n = 64 << 20, 2, 0, 0
    while written < total:
        with (directory / f"{seq:012d}.log").open("wb") as f:
            size = 0
            while size < segment:
                block = b"".join(line % (n + i) for i in range(block_lines))
                f.write(block)
                size += len(block)
                n += block_lines
        written += size
        seq += 1
    d.start()


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    out = subprocess.run(command, env=env, capture_output=True, check=True).stdout
    elapsed = time.perf_counter() - started
    assert out.count(b"\n") >= 1500 or "apps" in command, out[-200:]
    return elapsed * 1000


def main() -> None:
    gigabytes = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    total = int(gigabytes * (1 << 30))
    with daemon(f"log_history_bytes = {2 * total}\n") as d:
        fill(d, total)
        size = sum(p.stat().st_size for p in history_dir(d).glob("*.log"))
        last = max(history_dir(d).glob("*.log"))
        ctl = [str(VENV_BIN / "dynoctl")]
        logs = statistics.median(
            timed([*ctl, "logs", "-a", APP, "-n", "1500"], d.env) for _ in range(RUNS)
        )
        bare = statistics.median(timed([*ctl, "apps"], d.env) for _ in range(RUNS))
        api = []
        for _ in range(RUNS):
            started = time.perf_counter()
            status, _ = d.api("GET", f"/apps/{APP}")
            conn_time = time.perf_counter()
            subprocess.run(
                ["curl", "-s", "--unix-socket", str(d.run_dir / "api.sock"),
                 f"http://x/apps/{APP}/log-stream?lines=1500", "-o", "/dev/null"],
                check=True,
            )  # fmt: skip
            api.append((time.perf_counter() - conn_time) * 1000)
            assert status == 200 and started
        tail = statistics.median(
            timed(["tail", "-n", "1500", str(last)], d.env) for _ in range(RUNS)
        )
    print(f"history           {size / (1 << 30):.2f} GiB")
    print(f"dynoctl logs -n 1500   {logs:.0f} ms (median of {RUNS})")
    print(f"  API alone (curl)     {statistics.median(api):.0f} ms")
    print(f"anchor: dynoctl apps   {bare:.0f} ms; tail -n 1500 segment {tail:.1f} ms")


if __name__ == "__main__":
    main()
