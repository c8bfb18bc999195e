"""One dyno writing lines as fast as it can for 10 s: lines/s into the history.

Run as root: ``.venv/bin/python tests/bench/bench_logs_throughput.py [SECONDS]``.

The one-off dyno numbers its lines; afterwards the app's history files are read
back and every number is looked for, so "lost" is exact.  The per-dyno rate
limit is raised out of the way for the first run; a second run keeps the
default limit and checks the L12 lines account for every dropped line.
Anchor: the same writer piped straight into a file on this host, same run.
"""

from __future__ import annotations

import re
import sys

from bench_logs_common import (
    anchor_lines_per_second,
    daemon,
    flood,
    history_dir,
    seqs_in,
)

from dynod.config import Config


def run(seconds: float, settings: str) -> tuple[int, int, int]:
    """Flood for ``seconds``: (lines written, lines in history, L12-dropped)."""
    with daemon(settings + "log_history_bytes = 4294967296\n") as d:
        written = flood(d, seconds)
        data = b"".join(p.read_bytes() for p in sorted(history_dir(d).glob("*.log")))
    told = sum(
        int(n) for n in re.findall(rb"Error L12 \(Log rate limit\): (\d+)", data)
    )
    return written, len(seqs_in(data) & set(range(written))), told


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    written, kept, _ = run(seconds, "log_rate_lines = 100000000\n")
    print(f"rate limit out of the way ({seconds:.0f} s flood):")
    print(f"  dyno wrote        {written:,} lines")
    print(f"  into history      {kept / seconds:,.0f} lines/s")
    print(f"  lost              {written - kept:,}")
    limit = Config().log_rate_lines
    written, kept, told = run(seconds, "")
    print(f"default limit, {limit:,} lines/s per dyno:")
    print(f"  dyno wrote        {written:,} lines")
    print(f"  into history      {kept / seconds:,.0f} lines/s")
    print(f"  dropped           {written - kept:,} (L12 lines say {told:,})")
    print(f"anchor: writer -> file, no dynod: {anchor_lines_per_second():,.0f} lines/s")


if __name__ == "__main__":
    main()
