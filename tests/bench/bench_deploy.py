"""Deploy of the bundled example app: from `dynoctl deploy` to the first 200.

Starts a real dynod (own instance, dirs, subnet, ports), creates an app per
round, and times `dynoctl deploy examples/python-app` until the router first
answers 200 for it.  Prints each round and the median.  Goal: under 5 s.

    .venv/bin/python tests/bench/bench_deploy.py [ROUNDS]
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.daemon import (
    EXAMPLE_APP,
    make_daemon,
)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    base = Path(tempfile.mkdtemp(prefix="dynod-bench-"))
    stacks = base / "stacks"
    daemon = make_daemon(base, stacks)
    try:
        t0 = time.monotonic()
        daemon.start()
        print(f"daemon start (incl. stack build): {time.monotonic() - t0:.2f} s")
        times = []
        for i in range(rounds):
            app = f"bench{i}"
            daemon.ctl("apps:create", app)
            start = time.monotonic()
            daemon.ctl("deploy", "-a", app, str(EXAMPLE_APP), "--quiet")
            deployed = time.monotonic()
            while True:
                try:
                    if daemon.get(app, "/", timeout=2)[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.005)
            first = time.monotonic()
            times.append(first - start)
            print(
                f"round {i + 1}: deploy command {deployed - start:.2f} s, "
                f"first 200 after {first - start:.2f} s"
            )
        print(
            f"median deploy → first 200: {statistics.median(times):.2f} s (goal < 5 s)"
        )
    finally:
        daemon.destroy()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
