"""cgroup v2 backend: one tree, controllers delegated down to each dyno.

Layout under the root (``/sys/fs/cgroup``, or the delegated cgroup of
``dynod.service`` under systemd with ``Delegate=yes``)::

    <root>/<instance>/daemon          the daemon itself, once it asks to move
    <root>/<instance>/dynos/<dyno_id> one cgroup per dyno

A controller only reaches a cgroup if every ancestor lists it in
``cgroup.subtree_control``, and the kernel refuses to enable controllers for the
children of a non-root cgroup that holds processes (the "no internal processes"
rule, Documentation/admin-guide/cgroup-v2.rst).  Hence the daemon's own leaf.
"""

from __future__ import annotations

import builtins
import os
import signal
import time
from pathlib import Path

import structlog

from dynod.errors import CgroupError
from dynod.runtime.cgroups import (
    REMOVE_TIMEOUT,
    CgroupFs,
    CgroupMode,
    read_control,
    read_keyed,
    read_pids,
    remove_dirs,
    signal_pids,
    write_control,
)
from dynod.runtime.spec import Size

log = structlog.get_logger("dynod.runtime.cgroups")

CONTROLLERS = ("memory", "cpu", "pids")
CPU_PERIOD_US = 100_000
# cpu.weight accepts 1..10000; 100 is the default and one Heroku share.
MAX_CPU_WEIGHT = 10_000
FREEZE_TIMEOUT = 1.0


class CgroupsV2:
    """The v2 cgroups of one daemon instance (see the module docstring)."""

    mode = CgroupMode.V2
    # How long remove() and destroy() wait for busy cgroups to empty.
    remove_timeout = REMOVE_TIMEOUT

    def __init__(self, instance: str, root: Path, fs: CgroupFs) -> None:
        self.instance = instance
        self.root = root
        self.fs = fs
        self._top = root / instance
        self._dynos = self._top / "dynos"
        self._leaf = self._top / "daemon"

    def paths(self, dyno_id: str) -> builtins.list[Path]:
        return [self._dynos / dyno_id]

    # -- lifecycle --------------------------------------------------------

    def create(self, dyno_id: str, size: Size) -> None:
        # Make the directories and delegate the controllers down to the dyno.
        cg = self._dynos / dyno_id
        for parent, child in ((self.root, self._top), (self._top, self._dynos)):
            self._enable_controllers(parent)
            self._mkdir(child)
        self._enable_controllers(self._dynos)
        self._mkdir(cg)

        # Memory, with no swap: the limit must make the kernel OOM-kill inside
        # the dyno rather than let it page out the host.
        write_control(self.fs, cg / "memory.max", str(size.memory_bytes))
        if self.fs.exists(cg / "memory.swap.max"):
            write_control(self.fs, cg / "memory.swap.max", "0")

        # CPU weight, and the ceiling ("max" lifts one left by an earlier size).
        weight = min(100 * size.cpu_shares, MAX_CPU_WEIGHT)
        write_control(self.fs, cg / "cpu.weight", str(weight))
        quota = (
            "max"
            if size.cpu_quota is None
            else str(int(size.cpu_quota * CPU_PERIOD_US))
        )
        write_control(self.fs, cg / "cpu.max", f"{quota} {CPU_PERIOD_US}")

        # Tasks: a fork loop stops here instead of exhausting the host.
        write_control(self.fs, cg / "pids.max", str(size.pids))

    def _enable_controllers(self, parent: Path) -> None:
        """Add any of memory, cpu, pids missing from ``parent``'s subtree_control."""
        enabled = read_control(self.fs, parent / "cgroup.subtree_control").split()
        wanted = [c for c in CONTROLLERS if c not in enabled]
        if not wanted:
            return
        available = read_control(self.fs, parent / "cgroup.controllers").split()
        absent = [c for c in wanted if c not in available]
        if absent:
            raise CgroupError(
                f"The cgroup v2 controller(s) {', '.join(absent)} are not available "
                f"in {parent}; run dynod with them delegated (systemd: Delegate=yes)."
            )
        try:
            self.fs.write(
                parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted)
            )
        except OSError as exc:
            raise CgroupError(
                f"Could not enable {', '.join(wanted)} for the children of {parent}: "
                f"{exc.strerror or exc}. A cgroup holding processes cannot delegate "
                "controllers; move the daemon into its leaf first."
            ) from exc

    def _mkdir(self, path: Path) -> None:
        try:
            self.fs.mkdir(path)
        except OSError as exc:
            raise CgroupError(
                f"Could not create cgroup {path}: {exc.strerror or exc}. "
                "Check that dynod runs as root and owns this cgroup subtree."
            ) from exc

    def attach(self, dyno_id: str, pid: int) -> None:
        write_control(self.fs, self._dynos / dyno_id / "cgroup.procs", str(pid))

    def enter_daemon_leaf(self, pid: int) -> None:
        self._mkdir(self._top)
        self._mkdir(self._leaf)
        write_control(self.fs, self._leaf / "cgroup.procs", str(pid))

    def remove(self, dyno_id: str) -> None:
        remove_dirs(self.fs, self.paths(dyno_id), self.remove_timeout)

    def list(self) -> builtins.list[str]:
        return self.fs.subdirs(self._dynos)

    def destroy(self) -> None:
        left = self.list()
        if left:
            raise CgroupError(
                f"Cgroups of dynos {', '.join(left)} still exist; stop and remove "
                "those dynos before destroying the instance's cgroups."
            )
        remove_dirs(self.fs, [self._dynos], self.remove_timeout)
        # The daemon cannot leave its own leaf (its parent delegates
        # controllers, so it may hold no processes): that leaf, and the
        # instance cgroup above it, stay until the daemon has exited.
        if os.getpid() in read_pids(self.fs, [self._leaf]):
            log.info("cgroup_leaf_kept", path=str(self._leaf))
            return
        remove_dirs(self.fs, [self._leaf, self._top], self.remove_timeout)

    # -- readings ---------------------------------------------------------

    def procs(self, dyno_id: str) -> builtins.list[int]:
        return read_pids(self.fs, self.paths(dyno_id))

    def memory(self, dyno_id: str) -> tuple[int, int]:
        """Use and limit in bytes; an unlimited ``max`` reads as 2**63 - 1."""
        cg = self._dynos / dyno_id
        usage = int(read_control(self.fs, cg / "memory.current"))
        limit = read_control(self.fs, cg / "memory.max")
        return usage, (2**63 - 1 if limit == "max" else int(limit))

    def oom_kills(self, dyno_id: str) -> int:
        return read_keyed(self.fs, self._dynos / dyno_id / "memory.events", "oom_kill")

    def cpu_seconds(self, dyno_id: str) -> float:
        path = self._dynos / dyno_id / "cpu.stat"
        return read_keyed(self.fs, path, "usage_usec") / 1e6

    def pids_current(self, dyno_id: str) -> int:
        return int(read_control(self.fs, self._dynos / dyno_id / "pids.current"))

    # -- signals ----------------------------------------------------------

    def kill_all(self, dyno_id: str, sig: int) -> None:
        cg = self._dynos / dyno_id
        if not self.fs.exists(cg):
            return

        # SIGKILL is one atomic write (kernel 5.14+).
        if sig == signal.SIGKILL and self.fs.exists(cg / "cgroup.kill"):
            write_control(self.fs, cg / "cgroup.kill", "1")
            return

        # Other signals: freeze so nothing forks past us, signal each, thaw.
        write_control(self.fs, cg / "cgroup.freeze", "1")
        try:
            self._wait_frozen(cg)
            signal_pids(read_pids(self.fs, [cg]), sig)
        finally:
            write_control(self.fs, cg / "cgroup.freeze", "0")

    def _wait_frozen(self, cg: Path) -> None:
        deadline = time.monotonic() + FREEZE_TIMEOUT
        while read_keyed(self.fs, cg / "cgroup.events", "frozen") != 1:
            if time.monotonic() >= deadline:
                # Signal anyway; a task that forks now is caught by the next call.
                log.warning("freeze_timeout", path=str(cg))
                return
            time.sleep(0.001)
