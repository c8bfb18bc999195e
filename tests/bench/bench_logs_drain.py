"""The flood of bench_logs_throughput with a syslog drain to rsyslog.

Run as root: ``.venv/bin/python tests/bench/bench_logs_drain.py [SECONDS]``.

Counts the numbered lines rsyslog wrote out, so "delivered" and "dropped" are
exact, and sums the counts of the L10 lines in the history to check they
account for every dropped line: the flood's and the platform's (the one-off's
state changes, the L12 and L10 lines themselves), which the drain carries too.
Anchor: the same rsyslog fed the same number of pre-framed messages over one
TCP connection, with no dynod.
"""

from __future__ import annotations

import re
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from bench_logs_common import REPO, Daemon, daemon, flood, history_dir

sys.path.insert(0, str(REPO))
from tests.integration.logs.logs_receivers import Rsyslog

SEQ = re.compile(rb"\|bench (\d+) x")


def delivered(receiver: Rsyslog) -> set[int]:
    if not receiver.output.exists():
        return set()
    return {int(m) for m in SEQ.findall(receiver.output.read_bytes())}


def settle(receiver: Rsyslog) -> float:
    """Wait until rsyslog's output stops growing; returns when it last grew."""
    size, grew = -1, time.monotonic()
    while time.monotonic() - grew < 3:
        now = receiver.output.stat().st_size if receiver.output.exists() else 0
        if now != size:
            size, grew = now, time.monotonic()
        time.sleep(0.2)
    return grew


def read_history(d: Daemon) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(history_dir(d).glob("*.log")))


def anchor(directory: Path, count: int) -> float:
    """Messages per second rsyslog takes from a plain sender, no dynod."""
    receiver = Rsyslog(directory)
    receiver.start()
    try:
        message = b"<190>1 2026-12-03T18:12:23.123456+00:00 d.x app run.1 - - " + (
            b"bench %d " + b"x" * 80
        )
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", receiver.port)) as s:
            for base in range(0, count, 10000):
                chunk = []
                for i in range(base, min(base + 10000, count)):
                    m = message % i
                    chunk.append(b"%d %s" % (len(m), m))
                s.sendall(b"".join(chunk))
        done = settle(receiver)
        return len(delivered(receiver)) / (done - started)
    finally:
        receiver.stop()


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    work = Path(tempfile.mkdtemp(prefix="dynod-bench-drain-"))
    receiver = Rsyslog(work / "rsyslog")
    receiver.start()
    try:
        settings = "log_rate_lines = 100000000\nlog_history_bytes = 4294967296\n"
        with daemon(settings) as d:
            before = read_history(d).count(b"\n")
            d.ctl("drains:add", "-a", "bench", f"syslog://127.0.0.1:{receiver.port}")
            started = time.monotonic()
            written = flood(d, seconds)
            done = settle(receiver)
            history = read_history(d)
    finally:
        receiver.stop()
    got = delivered(receiver) & set(range(written))
    # Every line logged since the drain was added was the drain's to send.
    drained = history.count(b"\n") - before
    received = receiver.output.read_bytes().count(b"\n")
    told = sum(
        int(n)
        for n in re.findall(rb"Error L10 \(output buffer overflow\): (\d+)", history)
    )
    print(f"dyno wrote        {written:,} lines in {seconds:.0f} s")
    print(
        f"delivered         {len(got):,} ({len(got) / (done - started):,.0f} lines/s)"
    )
    print(f"dropped           {written - len(got):,} of the flood's lines")
    print(f"{'':18}{drained - received:,} of all lines (L10 lines say {told:,})")
    rate = anchor(work / "anchor", written)
    print(f"anchor: plain sender -> rsyslog: {rate:,.0f} msg/s")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
