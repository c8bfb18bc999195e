"""The host's own cgroups (v1 or hybrid here): real limits on real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynod.runtime.cgroups import Cgroups, open_cgroups
from dynod.runtime.spec import MB, Size

pytestmark = pytest.mark.integration

SMALL = Size("tiny", 48 * MB, 12, 2, cpu_quota=0.2)
PYTHON = "/usr/bin/python3"


@pytest.fixture
def cg(instance: str) -> Iterator[Cgroups]:
    cgroups = open_cgroups(instance)
    yield cgroups
    # Whatever the test left: kill it, then remove every cgroup.
    for dyno in cgroups.list():
        cgroups.kill_all(dyno, signal.SIGKILL)
        cgroups.remove(dyno)
    cgroups.destroy()


def spawn(cg: Cgroups, dyno: str, *argv: str) -> subprocess.Popen[str]:
    """Run argv inside the dyno's cgroups from its first instruction."""
    return subprocess.Popen(
        argv,
        preexec_fn=lambda: cg.attach(dyno, os.getpid()),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def test_create_sets_the_limit_files(cg: Cgroups) -> None:
    cg.create("web1", SMALL)

    def read(hierarchy: str, name: str) -> str:
        (d,) = [p for p in cg.paths("web1") if p.parts[4] == hierarchy]
        return (d / name).read_text().strip()

    assert read("memory", "memory.limit_in_bytes") == str(48 * MB)
    assert "oom_kill_disable 0" in read("memory", "memory.oom_control")
    assert read("pids", "pids.max") == "12"
    assert read("cpu", "cpu.shares") == "2048"
    assert read("cpu", "cpu.cfs_quota_us") == "20000"
    assert all(p.is_dir() for p in cg.paths("web1"))
    assert cg.memory("web1")[1] == 48 * MB
    assert cg.list() == ["web1"]


def test_a_memory_hog_is_oom_killed_inside_the_dyno(cg: Cgroups) -> None:
    cg.create("hog", SMALL)
    # bytes * n touches every page, so it is charged to the cgroup at once.
    hog = spawn(cg, "hog", PYTHON, "-c", "b = b'x' * (256 << 20)")

    assert hog.wait(timeout=20) == -signal.SIGKILL
    assert cg.oom_kills("hog") == 1
    assert cg.memory("hog")[0] <= 48 * MB


def test_the_pids_limit_stops_a_fork_loop(cg: Cgroups) -> None:
    cg.create("forky", SMALL)
    loop = spawn(
        cg,
        "forky",
        PYTHON,
        "-c",
        "import os, time\n"
        "failed = 0\n"
        "for _ in range(40):\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "    except OSError:\n"
        "        failed += 1\n"
        "print(failed, flush=True)\n"
        "time.sleep(60)\n",
    )
    assert loop.stdout is not None
    failed = int(loop.stdout.readline())

    # 12 tasks allowed: the parent plus 11 children; the other 29 forks failed.
    assert failed == 29
    assert cg.pids_current("forky") == 12
    assert len(cg.procs("forky")) == 12

    # One SIGKILL for the dyno takes every process with it.
    cg.kill_all("forky", signal.SIGKILL)
    assert loop.wait(timeout=5) == -signal.SIGKILL
    assert wait_empty(cg, "forky")
    loop.stdout.close()


def test_kill_all_with_sigterm_reaches_every_process(cg: Cgroups) -> None:
    cg.create("web1", SMALL)
    sh = spawn(cg, "web1", "sh", "-c", "sleep 60 & sleep 60 & wait")
    deadline = time.monotonic() + 5
    while len(cg.procs("web1")) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(cg.procs("web1")) == 3

    cg.kill_all("web1", signal.SIGTERM)
    assert sh.wait(timeout=5) == -signal.SIGTERM
    assert wait_empty(cg, "web1")
    # The freezer was thawed again (a frozen cgroup would hold new processes).
    freezer = next(p for p in cg.paths("web1") if "freezer" in p.parts)
    assert (freezer / "freezer.state").read_text().strip() == "THAWED"
    assert sh.stdout is not None
    sh.stdout.close()


def test_the_cfs_quota_caps_cpu_time(cg: Cgroups) -> None:
    cg.create("busy", SMALL)
    busy = spawn(
        cg,
        "busy",
        PYTHON,
        "-c",
        "import time\nend = time.monotonic() + 0.8\nwhile time.monotonic() < end: pass",
    )
    assert busy.wait(timeout=10) == 0
    assert busy.stdout is not None
    busy.stdout.close()

    # 20 % of one CPU over 0.8 s is 0.16 s, plus interpreter start-up.
    assert 0.05 < cg.cpu_seconds("busy") < 0.4


def test_remove_and_destroy_leave_nothing(cg: Cgroups, instance: str) -> None:
    cg.create("web1", SMALL)
    sleeper = spawn(cg, "web1", "sleep", "60")
    cg.kill_all("web1", signal.SIGKILL)
    sleeper.wait(timeout=5)
    assert sleeper.stdout is not None
    sleeper.stdout.close()

    # Straight after the kill: remove() rides out the kernel's lazy release.
    cg.remove("web1")
    cg.remove("web1")
    cg.destroy()
    assert cg.list() == []
    left = [p for p in Path("/sys/fs/cgroup").glob(f"*/{instance}") if p.exists()]
    assert left == []


def wait_empty(cg: Cgroups, dyno: str, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while cg.procs(dyno):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
