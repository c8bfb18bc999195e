"""Shared set-up of the log benchmarks (not a benchmark itself).

A real ``dynod serve`` of its own instance with the log-writer app deployed,
and a flood of numbered lines from a one-off dyno, counted back from wherever
they landed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.support.daemon import Daemon, running_daemon  # noqa: E402

APP = "bench"
LOG_APP = REPO / "tests" / "fixtures" / "apps" / "log-writer"
FLOOD_LINE = re.compile(rb"bench (\d+) x")


@contextmanager
def daemon(settings: str = "") -> Iterator[Daemon]:
    """A started daemon with ``settings`` (TOML) and the app deployed."""
    stacks = Path(tempfile.mkdtemp(prefix="dynod-bench-stacks-"))
    try:
        with running_daemon(stacks, settings, prefix="dynod-bench-logs-") as d:
            d.ctl("apps:create", APP)
            d.ctl("deploy", "-a", APP, str(LOG_APP))
            yield d
    finally:
        shutil.rmtree(stacks, ignore_errors=True)


def history_dir(d: Daemon) -> Path:
    app_id = d.ctl_json("apps:info", "-a", APP)["id"]
    return d.state_dir / "logs" / app_id


def flood(d: Daemon, seconds: float) -> int:
    """Run flood.py for ``seconds`` in a one-off; returns how many lines it wrote."""
    d.ctl("run:detached", "-a", APP, "--", "python3", "flood.py", str(seconds), "bench")
    deadline = time.monotonic() + seconds + 120
    while time.monotonic() < deadline:
        for line in d.ctl(
            "logs", "-a", APP, "-n", "20", "-p", "run"
        ).stdout.splitlines():
            if "bench done " in line:
                return int(line.rsplit(" ", 1)[1])
        time.sleep(0.5)
    raise SystemExit("the flood never reported its end")


def seqs_in(data: bytes) -> set[int]:
    return {int(m) for m in FLOOD_LINE.findall(data)}


def anchor_lines_per_second(seconds: float = 3.0) -> float:
    """The same writer piped straight into a file: what the dyno alone can do."""
    with tempfile.TemporaryFile() as out:
        started = time.monotonic()
        subprocess.run(
            [sys.executable, str(LOG_APP / "flood.py"), str(seconds), "bench"],
            stdout=out,
            check=True,
        )
        elapsed = time.monotonic() - started
        out.seek(0)
        return len(seqs_in(out.read())) / elapsed
