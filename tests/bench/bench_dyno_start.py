"""Dyno start time against runc, with the launcher's phases.

Run as root: ``.venv/bin/python tests/bench/bench_dyno_start.py [N]``.

Measures, over N starts (default 50):

- through the API: from a ``POST /apps/NAME/dynos`` (``run:detached``) to a
  real daemon until the one-off's first line is in the app's log stream (the
  stream's timestamp is when dynod read the line);
- through the agent: from ``agent.start()`` to the dyno's first output line
  reaching the agent's listener;
- in the same run, ``runc run`` of a bundle on the same stack rootfs with the
  same command, from spawning runc to that line on runc's stdout.

Then prints where the dyno's milliseconds go, phase by phase (medians).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dynod.config import Config
from dynod.runtime.agent import DynoExit
from dynod.runtime.local import LocalAgent
from dynod.runtime.spec import MB, SIZES, DynoKind, DynoSpec
from dynod.runtime.stack import ensure_default_stack
from tests.support.daemon import EXAMPLE_APP, Daemon, make_daemon

MARKER = b"marker"
# Launcher phases in order: (mark, label of the step that ends there).
PHASES = [
    ("launch", "agent: address, cgroups, request to spawner"),
    ("a_forked", "spawner: fork A"),
    ("a_cgroups", "A: join v1 cgroups (tasks file, own tid)"),
    ("a_unshare", "A: unshare NS UTS IPC PID NET"),
    ("a_fork_b", "A: clone3 B into its cgroup2 cgroup"),
    ("a_veth", "A: veth on bridge, peer into netns"),
    ("b_forked", "B: running (from A's unshare)"),
    ("b_root", "B: tmpfs, overlay, binds, proc, dev, tmp"),
    ("b_go", "B: wait for A's veth"),
    ("b_net", "B: unshare CGROUP, lo and eth0 up, addr, route"),
    ("b_pivot", "B: pivot_root, hostname, stdio"),
    ("b_creds", "B: rlimits, setgroups, setresuid, no_new_privs"),
    ("exec", "B: execve tini (seen by the spawner)"),
    ("returned", "agent: reply, start() returns"),
    ("marker", "tini, bash, profile, exec echo, first line read"),
]


class Listener:
    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.exited: dict[str, asyncio.Event] = {}

    def on_output(self, dyno_id: str, stream: str, line: bytes) -> None:
        if line == MARKER and dyno_id not in self.seen:
            self.seen[dyno_id] = time.monotonic()

    def on_exit(self, event: DynoExit) -> None:
        self.exited.setdefault(event.dyno_id, asyncio.Event()).set()


async def bench_dynod(
    rootfs: Path, slug: Path, runs: int
) -> tuple[list[float], list[dict[str, float]]]:
    instance = "db" + secrets.token_hex(3)[:5]
    run_dir = Path(tempfile.mkdtemp(prefix="dynod-bench-"))
    listener = Listener()
    config = Config(
        run_dir=run_dir,
        instance=instance,
        dyno_subnet=ipaddress.IPv4Network("10.250.0.0/24"),
    )
    agent = LocalAgent(config, listener)
    totals: list[float] = []
    marks: list[dict[str, float]] = []
    await agent.open()
    try:
        for i in range(runs + 3):
            spec = DynoSpec(
                dyno_id=f"b{i}",
                app="bench",
                name=f"web.{i}",
                kind=DynoKind.FORMATION,
                argv=("echo", MARKER.decode()),
                env={"HOME": "/app"},
                size=SIZES["standard-1x"],
                uid=240001,
                gid=240001,
                stack_dir=rootfs,
                slug_dir=slug,
                ephemeral_bytes=64 * MB,
            )
            listener.exited[spec.dyno_id] = asyncio.Event()
            began = time.monotonic()
            await agent.start(spec)
            returned = time.monotonic()
            await listener.exited[spec.dyno_id].wait()
            if i < 3:
                continue  # warm-up
            m = dict(agent.last_start_marks)
            m["start"], m["returned"] = began, returned
            m["marker"] = listener.seen[spec.dyno_id]
            totals.append((m["marker"] - began) * 1000)
            marks.append(m)
    finally:
        await agent.destroy()
        shutil.rmtree(run_dir)
    return totals, marks


def bench_api(stacks: Path, runs: int) -> list[float]:
    """Milliseconds from POST /dynos to the one-off's first line in its stream."""
    base = Path(tempfile.mkdtemp(prefix="dynod-bench-api-"))
    d = make_daemon(base, stacks)
    totals: list[float] = []
    try:
        d.start()
        d.ctl("apps:create", "bench")
        d.ctl("deploy", "-a", "bench", str(EXAMPLE_APP))
        for i in range(runs + 3):
            marker = f"{MARKER.decode()}-{i}"
            began = time.time()
            status, dyno = d.api(
                "POST",
                "/apps/bench/dynos",
                {"command": f"echo {marker}", "attach": False, "env": {}},
            )
            if status != 201:
                raise SystemExit(f"POST /dynos failed: {status} {dyno}")
            stamp = _line_time(d, dyno["name"], marker)
            if i >= 3:
                totals.append((stamp - began) * 1000)
    finally:
        d.destroy()
        shutil.rmtree(base, ignore_errors=True)
    return totals


def _line_time(d: Daemon, dyno: str, text: str, timeout: float = 30) -> float:
    """The stream's timestamp of ``dyno``'s line ``text``, once it is there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = d.ctl("logs", "-a", "bench", "-d", dyno, "-n", "20").stdout
        for line in out.splitlines():
            if line.endswith(f"app[{dyno}]: {text}"):
                return datetime.fromisoformat(line.split(" ", 1)[0]).timestamp()
        time.sleep(0.05)
    raise SystemExit(f"{dyno} never logged {text!r}")


def bench_runc(rootfs: Path, runs: int) -> tuple[list[float], list[float]]:
    bundle = Path(tempfile.mkdtemp(prefix="dynod-bench-runc-"))
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["echo", MARKER.decode()]
    spec["root"] = {"path": str(rootfs), "readonly": True}
    (bundle / "config.json").write_text(json.dumps(spec))
    to_marker: list[float] = []
    whole: list[float] = []
    try:
        for i in range(runs + 3):
            began = time.monotonic()
            proc = subprocess.Popen(
                ["runc", "run", "-b", str(bundle), f"dynodbench{i}"],
                stdout=subprocess.PIPE,
            )
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            seen = time.monotonic()
            proc.wait()
            done = time.monotonic()
            if line != MARKER or proc.returncode != 0:
                raise SystemExit(f"runc run failed: {line!r}, exit {proc.returncode}")
            if i >= 3:
                to_marker.append((seen - began) * 1000)
                whole.append((done - began) * 1000)
    finally:
        shutil.rmtree(bundle)
    return to_marker, whole


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def _figures(values: list[float]) -> str:
    return f"median {statistics.median(values):6.1f} ms   p95 {p95(values):6.1f} ms"


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    stacks = Path(tempfile.mkdtemp(prefix="dynod-bench-stacks-"))
    slug = Path(tempfile.mkdtemp(prefix="dynod-bench-slug-"))
    (slug / "app").mkdir()
    try:
        rootfs = ensure_default_stack(stacks).rootfs
        api = bench_api(stacks, runs)
        totals, marks = asyncio.run(bench_dynod(rootfs, slug, runs))
        runc_marker, runc_whole = bench_runc(rootfs, runs)
    finally:
        shutil.rmtree(stacks)
        shutil.rmtree(slug)

    print(f"dyno start, {runs} runs (-> the command's first line)")
    print(f"  dynod : {_figures(api)}   (API POST /dynos -> line in the stream)")
    print(f"  dynod : {_figures(totals)}   (agent start() -> line read)")
    print(f"  runc  : {_figures(runc_marker)}   (spawn -> first line, same rootfs)")
    print(f"  runc  : {_figures(runc_whole)}   (whole `runc run`, incl. teardown)")
    start_returns = [(m["returned"] - m["start"]) * 1000 for m in marks]
    print(f"  dynod start() returns after: {_figures(start_returns)}")
    print()
    print("where a dyno's milliseconds go (median of each step; A and B overlap)")
    print(f"  {'ms':>6}  {'at':>6}  step")
    for key, label in PHASES:
        # Each step is measured from the mark before it in the same process.
        prev = _previous(key)
        steps = [(m[key] - m[prev]) * 1000 for m in marks if key in m and prev in m]
        ats = [(m[key] - m["start"]) * 1000 for m in marks if key in m]
        if steps:
            step, at = statistics.median(steps), statistics.median(ats)
            print(f"  {step:6.2f}  {at:6.2f}  {label}")


def _previous(key: str) -> str:
    order = {
        "launch": "start",
        "a_forked": "launch",
        "a_cgroups": "a_forked",
        "a_unshare": "a_cgroups",
        "a_fork_b": "a_unshare",
        "a_veth": "a_fork_b",
        "b_forked": "a_unshare",
        "b_root": "b_forked",
        "b_go": "b_root",
        "b_net": "b_go",
        "b_pivot": "b_net",
        "b_creds": "b_pivot",
        "exec": "b_creds",
        "returned": "exec",
        "marker": "returned",
    }
    return order[key]


if __name__ == "__main__":
    main()
