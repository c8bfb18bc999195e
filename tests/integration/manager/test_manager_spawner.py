"""The spawner dies: its dynos keep running and stay managed.

First the spawner alone gets ``kill -9`` under load: the daemon starts a new
one, keeps every dyno (same ids, no failed request), learns of a dyno's death
through its pidfd (status unknown) and starts new dynos through the new
spawner.  Then dynod and the spawner both get ``kill -9``: the next dynod finds
dynos no spawner knows and adopts them from their cgroups and records instead
of killing them; their output is read again and they can be stopped.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.daemon import EXAMPLE_APP, Daemon
from tests.support.load import LoadLoop

pytestmark = pytest.mark.integration

APP = "orphans"


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


def _spawner(d: Daemon) -> psutil.Process:
    """The daemon's spawner process, found by its run directory."""
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "dynod.runtime.spawner" in cmdline and str(d.run_dir) in cmdline:
            return proc
    pytest.fail(f"no spawner runs for {d.run_dir}")


def _main_process(dyno_id: str, script: str) -> psutil.Process:
    needle = f"DYNOD_DYNO_ID={dyno_id}".encode()
    for proc in psutil.process_iter(["cmdline"]):
        try:
            environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and script in (proc.info["cmdline"] or []):
            return proc
    pytest.fail(f"no process of dyno {dyno_id} runs {script}")


def _all_up(d: Daemon, names: list[str]) -> bool:
    ps = _ps(d)
    return sorted(ps) == names and all(x["state"] == "up" for x in ps.values())


def test_spawner_death_keeps_dynos_managed(dynod: Daemon) -> None:
    dynod.ctl("apps:create", APP)
    dynod.ctl("deploy", "-a", APP, str(EXAMPLE_APP))
    dynod.ctl("ps:scale", "-a", APP, "web=1", "worker=1")
    _wait(dynod, lambda: _all_up(dynod, ["web.1", "worker.1"]), "web=1 worker=1 up")
    before = {n: x["id"] for n, x in _ps(dynod).items()}

    # The spawner dies under load: no request fails, no dyno is lost.
    old_spawner = _spawner(dynod)
    with LoadLoop(dynod.http_port, f"{APP}.localhost", threads=2) as load:
        time.sleep(0.3)
        old_spawner.send_signal(signal.SIGKILL)
        old_spawner.wait(10)
        time.sleep(1.5)
    result = load.stop()
    assert result.requests > 50
    assert not result.failures, "\n".join(result.failures[:10])
    assert {n: x["id"] for n, x in _ps(dynod).items()} == before
    assert _spawner(dynod).pid != old_spawner.pid

    # The death of a dyno of the dead spawner is seen through its pidfd.
    os.kill(_main_process(before["worker.1"], "worker.py").pid, signal.SIGKILL)
    _wait(
        dynod,
        lambda: (
            _ps(dynod).get("worker.1", {}).get("id") not in (None, before["worker.1"])
        ),
        "worker.1 replaced",
        10,
    )
    logs = dynod.ctl("logs", "-a", APP, "-s", "dynod", "-n", "500").stdout
    assert "dynod[worker.1]: Process exited with status unknown" in logs

    # New dynos start through the new spawner.
    dynod.ctl("ps:scale", "-a", APP, "worker=2")
    _wait(dynod, lambda: _all_up(dynod, ["web.1", "worker.1", "worker.2"]), "scale")
    kept = {n: x["id"] for n, x in _ps(dynod).items()}

    # Now dynod and its spawner both die; the next dynod adopts every dyno.
    assert dynod.proc is not None
    spawner = _spawner(dynod)
    dynod.proc.send_signal(signal.SIGKILL)
    dynod.proc.wait(10)
    dynod.proc = None
    spawner.send_signal(signal.SIGKILL)
    spawner.wait(10)
    # Meanwhile the router serves on, and the web dyno logs every request
    # with no reader but itself: it must live, and its lines must wait.
    marker = f"unread-{time.monotonic_ns()}"
    for i in range(50):
        assert dynod.get(APP, f"/{marker}/{i}")[0] == 404
    dynod.start()
    _wait(dynod, lambda: _all_up(dynod, ["web.1", "worker.1", "worker.2"]), "adopt")
    assert {n: x["id"] for n, x in _ps(dynod).items()} == kept
    dynod.wait_for(APP, "/", "Hello from web.1")
    after = f"read-again-{time.monotonic_ns()}"
    assert dynod.get(APP, f"/{after}")[0] == 404
    _wait(
        dynod,
        lambda: f"/{after}" in dynod.ctl("logs", "-a", APP, "-s", "app").stdout,
        "an adopted orphan's output read again",
    )
    _wait(
        dynod,
        lambda: f"/{marker}/49" in dynod.ctl("logs", "-a", APP, "-s", "app").stdout,
        "the lines logged while no daemon ran",
    )

    # Output of an adopted dyno is read again from its reopened pipes.
    marker = f"reopened-{time.monotonic_ns()}"
    assert dynod.get(APP, f"/{marker}")[0] == 404
    _wait(
        dynod,
        lambda: marker in dynod.ctl("logs", "-a", APP, "-s", "app").stdout,
        "an adopted dyno's log line",
    )

    # Adopted dynos still stop and scale.
    dynod.ctl("ps:scale", "-a", APP, "worker=0")
    _wait(dynod, lambda: _all_up(dynod, ["web.1"]), "scale down")
    for dyno_id in (kept["worker.1"], kept["worker.2"]):
        needle = f"DYNOD_DYNO_ID={dyno_id}".encode()
        for proc in psutil.process_iter():
            try:
                environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
            except OSError:
                continue
            assert needle not in environ.split(b"\0"), f"{dyno_id} still runs"
