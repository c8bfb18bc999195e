"""Dynos that misbehave, with real processes under a real daemon.

One app carries a process type per misbehaviour: one that exits at once (a
crash loop), one that ignores SIGTERM, one that eats memory; the example
worker serves for ``kill -9`` of a dyno's process.  Each test scales its type
up, watches what dynod does from the outside (``ps``, the log stream, the
host's process table) and scales it back to zero.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.daemon import EXAMPLE_APP, Daemon

pytestmark = pytest.mark.integration

APP = "misbehave"

HOG = """\
import time
# Over the 512 MB quota of standard-1x, under the 1 GB hard limit: R14.
block = [bytearray(b"x" * (1 << 20)) for _ in range(700)]
print("holding 700 MB", flush=True)
time.sleep(float(__import__("os").environ.get("HOG_HOLD", "12")))
# Past twice the quota: the kernel's OOM killer acts inside the dyno (R15).
more = [bytearray(b"x" * (1 << 20)) for _ in range(600)]
print("survived 1.3 GB", flush=True)
time.sleep(600)
"""

PROCFILE = """\
web: python3 app.py
worker: python3 worker.py
crasher: echo crashing; exit 3
stubborn: python3 -c 'import signal, time; \
signal.signal(signal.SIGTERM, signal.SIG_IGN); print("ignoring", flush=True); \
time.sleep(600)'
hog: python3 hog.py
"""


@pytest.fixture(scope="module")
def app(dynod: Daemon, tmp_path_factory: pytest.TempPathFactory) -> Daemon:
    source = tmp_path_factory.mktemp("misbehave") / "app"
    shutil.copytree(EXAMPLE_APP, source)
    (source / "Procfile").write_text(PROCFILE)
    (source / "hog.py").write_text(HOG)
    dynod.ctl("apps:create", APP)
    dynod.ctl("deploy", "-a", APP, str(source))
    return dynod


def _ps(d: Daemon) -> dict[str, dict[str, Any]]:
    return {x["name"]: x for x in d.ctl_json("ps", "-a", APP)}


def _wait(
    d: Daemon, check: Callable[[], object], what: str, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"{what} did not happen within {timeout} s; ps: {_ps(d)}")


def _events(d: Daemon, dyno: str) -> list[str]:
    """The dyno's lines from dynod itself, oldest first."""
    out = d.ctl("logs", "-a", APP, "-s", "dynod", "-n", "1500").stdout
    return [x.split(": ", 1)[1] for x in out.splitlines() if f"dynod[{dyno}]:" in x]


def _scale_to_zero(d: Daemon, ptype: str) -> None:
    d.ctl("ps:scale", "-a", APP, f"{ptype}=0")
    _wait(d, lambda: not any(n.startswith(ptype + ".") for n in _ps(d)), "scale 0")


def _dyno_processes(dyno_id: str) -> list[psutil.Process]:
    """The host's processes of one dyno, found by the id in their environment."""
    needle = f"DYNOD_DYNO_ID={dyno_id}".encode()
    found = []
    for proc in psutil.process_iter():
        try:
            environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(proc)
    return found


def test_crash_loop_backs_off_and_shows_crashed(app: Daemon) -> None:
    assert app.proc is not None
    daemon = psutil.Process(app.proc.pid)
    cpu_before = sum(daemon.cpu_times()[:2])
    app.ctl("ps:scale", "-a", APP, "crasher=1")
    try:
        # Starts at 0 s and at once after the first crash, then after 1, 2, 4 s.
        time.sleep(5.0)
        starts = [
            x for x in _events(app, "crasher.1") if x.startswith("Starting process")
        ]
        assert 3 <= len(starts) <= 6, starts
        cpu = sum(daemon.cpu_times()[:2]) - cpu_before
        assert cpu < 2.5, f"dynod used {cpu:.2f} s of CPU in a 5 s crash loop"
        assert "Process exited with status 3" in _events(app, "crasher.1")

        # Between attempts: crashed, with the time of the next one.
        def crashed_with_next_attempt() -> bool:
            dyno = _ps(app).get("crasher.1", {})
            return dyno.get("state") == "crashed" and bool(dyno.get("restart_at"))

        _wait(app, crashed_with_next_attempt, "crasher.1 crashed with restart_at", 10)
    finally:
        _scale_to_zero(app, "crasher")


def test_sigterm_ignored_gets_r12_then_sigkill(app: Daemon) -> None:
    app.ctl("apps:settings:set", "-a", APP, "stop_timeout=1")
    app.ctl("ps:scale", "-a", APP, "stubborn=1")
    try:
        _wait(
            app,
            lambda: _ps(app).get("stubborn.1", {}).get("state") == "up",
            "stubborn.1 up",
        )
        _wait(
            app,
            lambda: "ignoring" in app.ctl("logs", "-a", APP, "-s", "app").stdout,
            "the app installing its SIGTERM handler",
        )
        started = time.monotonic()
        _scale_to_zero(app, "stubborn")
        took = time.monotonic() - started
        events = _events(app, "stubborn.1")
        assert "Stopping all processes with SIGTERM" in events
        r12 = [x for x in events if x.startswith("Error R12 (Exit timeout)")]
        assert r12 == [
            "Error R12 (Exit timeout) -> Process failed to exit within 1 "
            "seconds of SIGTERM"
        ]
        assert "Stopping process with SIGKILL" in events
        # SIGKILL came after the 1 s stop timeout, not the 30 s default.
        assert 1.0 <= took < 10.0, took
    finally:
        app.ctl("apps:settings:set", "-a", APP, "stop_timeout=30")


def test_memory_hog_gets_r14_then_r15(app: Daemon) -> None:
    app.ctl("ps:scale", "-a", APP, "hog=1")
    try:

        def logged(prefix: str) -> bool:
            return any(x.startswith(prefix) for x in _events(app, "hog.1"))

        # The check runs every 10 s; the hog holds 700 MB for 12 s.
        _wait(app, lambda: logged("Error R14 (Memory quota exceeded)"), "R14", 25)
        usage = [x for x in _events(app, "hog.1") if x.startswith("Process running")]
        assert usage and "mem=" in usage[0]
        mb = int(usage[0].split("mem=")[1].split("MB")[0])
        assert 512 < mb < 1024, usage
        _wait(app, lambda: logged("Error R15 (Memory quota vastly exceeded)"), "R15")
        assert "survived 1.3 GB" not in app.ctl("logs", "-a", APP, "-s", "app").stdout
        # The OOM kill counts as a crash: the dyno comes back.
        _wait(
            app,
            lambda: _ps(app).get("hog.1", {}).get("state") in ("starting", "up"),
            "hog.1 restarted",
        )
    finally:
        _scale_to_zero(app, "hog")


def test_kill_9_of_a_dyno_process_is_replaced_within_a_second(app: Daemon) -> None:
    app.ctl("ps:scale", "-a", APP, "worker=1")
    try:
        _wait(
            app,
            lambda: _ps(app).get("worker.1", {}).get("state") == "up",
            "worker.1 up",
        )
        old = _ps(app)["worker.1"]["id"]
        procs = [
            p for p in _dyno_processes(old) if "worker.py" in " ".join(p.cmdline())
        ]
        assert procs, f"no process of dyno {old} runs worker.py"

        started = time.monotonic()
        for proc in procs:
            os.kill(proc.pid, signal.SIGKILL)

        def replaced() -> bool:
            dyno = _ps(app).get("worker.1", {})
            return dyno.get("id") not in (None, old) and dyno.get("state") == "up"

        _wait(app, replaced, "worker.1 replaced", 10)
        took = time.monotonic() - started
        assert took < 1.5, f"replacement took {took:.2f} s"
        assert "Process exited with status 137" in _events(app, "worker.1")
    finally:
        _scale_to_zero(app, "worker")


def test_run_ttl_ends_a_one_off(app: Daemon) -> None:
    # --json before the command: what follows `--` is the dyno's.
    out = app.ctl("run:detached", "--json", "-a", APP, "--ttl", "2", "--", "sleep 60")
    started = json.loads(out.stdout)
    name = started["name"]
    assert started["expires_at"]
    assert _ps(app)[name]["state"] in ("starting", "up")
    _wait(app, lambda: name not in _ps(app), f"{name} ended by its ttl", 10)
    events = _events(app, name)
    assert "Stopping all processes with SIGTERM" in events
    assert "State changed from up to down" in events

    refused = app.ctl(
        "run:detached", "-a", APP, "--ttl", "0", "--", "true", check=False
    )
    assert refused.returncode != 0
    assert "time_to_live=0 is out of range" in refused.stderr
