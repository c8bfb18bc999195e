"""cgroup v1 (and hybrid) backend: one cgroup per controller hierarchy.

Each of the memory, cpu, cpuacct, pids and freezer controllers may be mounted on
its own hierarchy or co-mounted with others (``cpu,cpuacct`` on many distros,
separate on others), so the hierarchies are read from mountinfo and every
distinct mount point gets ``<instance>/dynos/<dyno_id>``.  On hybrid hosts the
cgroup2 mount gets one too: it has no controllers there, but gives
``cgroup.kill`` (an atomic SIGKILL of every process) and ``cgroup.events``.

v1 has no atomic kill; :meth:`CgroupsV1.kill_all` freezes the dyno, signals each
process and thaws it, so a fork loop cannot outrun the signals
(Documentation/admin-guide/cgroup-v1/freezer-subsystem.rst).
"""

from __future__ import annotations

import builtins
import re
import signal
import time
from dataclasses import dataclass
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

CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "freezer")
CFS_PERIOD_US = 100_000
# How long kill_all waits for the freezer to report FROZEN before it signals
# anyway; freezing a few processes takes well under a millisecond.
FREEZE_TIMEOUT = 1.0
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mounts:
    """Where each v1 controller is mounted, and the cgroup2 mount if any."""

    controllers: dict[str, Path]
    unified: Path | None


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo (proc(5)).
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> Mounts:
    """Find the v1 controller mounts and the first cgroup2 mount in mountinfo."""
    controllers: dict[str, Path] = {}
    unified: Path | None = None
    for line in text.splitlines():
        head, sep, tail = line.partition(" - ")
        if not sep:
            continue
        fields, tail_fields = head.split(), tail.split()
        fstype, super_opts = tail_fields[0], tail_fields[2].split(",")
        mount_point = Path(_unescape(fields[4]))
        if fstype == "cgroup2" and unified is None:
            unified = mount_point
        elif fstype == "cgroup":
            for opt in super_opts:
                if opt in CONTROLLERS:
                    # A hierarchy mounted twice: the first mount is as good.
                    controllers.setdefault(opt, mount_point)
    return Mounts(controllers, unified)


class CgroupsV1:
    """The v1 cgroups of one daemon instance (see the module docstring)."""

    mode = CgroupMode.V1
    # How long remove() and destroy() wait for busy cgroups to empty.
    remove_timeout = REMOVE_TIMEOUT

    def __init__(self, instance: str, mounts: Mounts, fs: CgroupFs) -> None:
        missing = [c for c in CONTROLLERS if c not in mounts.controllers]
        if missing:
            raise CgroupError(
                f"The cgroup v1 controller(s) {', '.join(missing)} are not mounted; "
                "mount them under /sys/fs/cgroup (or boot with cgroup v2)."
            )
        self.instance = instance
        self.fs = fs
        # The instance's "dynos" directory in each controller's hierarchy.
        self._bases = {
            c: mp / instance / "dynos" for c, mp in mounts.controllers.items()
        }
        self._unified = mounts.unified / instance / "dynos" if mounts.unified else None

    # -- layout -----------------------------------------------------------

    def _base_dirs(self) -> builtins.list[Path]:
        """Each hierarchy's ``<instance>/dynos`` once, cgroup2 last."""
        dirs = list(dict.fromkeys(self._bases[c] for c in CONTROLLERS))
        return dirs + ([self._unified] if self._unified else [])

    def _dir(self, controller: str, dyno_id: str) -> Path:
        return self._bases[controller] / dyno_id

    def paths(self, dyno_id: str) -> builtins.list[Path]:
        return [base / dyno_id for base in self._base_dirs()]

    # -- lifecycle --------------------------------------------------------

    def create(self, dyno_id: str, size: Size) -> None:
        # Make every directory, parents first; existing ones are kept.
        for base in self._base_dirs():
            for d in (base.parent, base, base / dyno_id):
                self._mkdir(d)

        # Memory: the kernel refuses a limit above memsw (and memsw below the
        # limit), so the order depends on which way the limit moves.
        mem = self._dir("memory", dyno_id)
        memsw = mem / "memory.memsw.limit_in_bytes"
        limit = str(size.memory_bytes)
        if self.fs.exists(memsw):
            current = int(read_control(self.fs, mem / "memory.limit_in_bytes"))
            order = [memsw, None] if size.memory_bytes > current else [None, memsw]
            for f in order:
                write_control(self.fs, f or mem / "memory.limit_in_bytes", limit)
        else:
            write_control(self.fs, mem / "memory.limit_in_bytes", limit)
        # A new cgroup inherits oom_kill_disable from its parent; the memory
        # limit is only a limit if the OOM killer acts inside the dyno.
        write_control(self.fs, mem / "memory.oom_control", "0")

        # CPU weight, and the CFS ceiling (-1 lifts one left by an earlier size).
        cpu = self._dir("cpu", dyno_id)
        write_control(self.fs, cpu / "cpu.shares", str(1024 * size.cpu_shares))
        write_control(self.fs, cpu / "cpu.cfs_period_us", str(CFS_PERIOD_US))
        quota = -1 if size.cpu_quota is None else int(size.cpu_quota * CFS_PERIOD_US)
        write_control(self.fs, cpu / "cpu.cfs_quota_us", str(quota))

        # Tasks: a fork loop stops here instead of exhausting the host.
        write_control(self.fs, self._dir("pids", dyno_id) / "pids.max", str(size.pids))

    def _mkdir(self, path: Path) -> None:
        try:
            self.fs.mkdir(path)
        except OSError as exc:
            raise CgroupError(
                f"Could not create cgroup {path}: {exc.strerror or exc}. "
                "Check that dynod runs as root."
            ) from exc

    def attach(self, dyno_id: str, pid: int) -> None:
        for d in self.paths(dyno_id):
            write_control(self.fs, d / "cgroup.procs", str(pid))

    def remove(self, dyno_id: str) -> None:
        remove_dirs(self.fs, self.paths(dyno_id), self.remove_timeout)

    def list(self) -> builtins.list[str]:
        ids: set[str] = set()
        for base in self._base_dirs():
            ids.update(self.fs.subdirs(base))
        return sorted(ids)

    def enter_daemon_leaf(self, pid: int) -> None:
        # v1 has no rule against processes in inner cgroups.
        return None

    def destroy(self) -> None:
        left = self.list()
        if left:
            raise CgroupError(
                f"Cgroups of dynos {', '.join(left)} still exist; stop and remove "
                "those dynos before destroying the instance's cgroups."
            )
        for base in self._base_dirs():
            remove_dirs(self.fs, [base, base.parent], self.remove_timeout)

    # -- readings ---------------------------------------------------------

    def procs(self, dyno_id: str) -> builtins.list[int]:
        return read_pids(self.fs, self.paths(dyno_id))

    def memory(self, dyno_id: str) -> tuple[int, int]:
        mem = self._dir("memory", dyno_id)
        usage = int(read_control(self.fs, mem / "memory.usage_in_bytes"))
        return usage, int(read_control(self.fs, mem / "memory.limit_in_bytes"))

    def oom_kills(self, dyno_id: str) -> int:
        path = self._dir("memory", dyno_id) / "memory.oom_control"
        return read_keyed(self.fs, path, "oom_kill")

    def cpu_seconds(self, dyno_id: str) -> float:
        path = self._dir("cpuacct", dyno_id) / "cpuacct.usage"
        return int(read_control(self.fs, path)) / 1e9

    def pids_current(self, dyno_id: str) -> int:
        path = self._dir("pids", dyno_id) / "pids.current"
        return int(read_control(self.fs, path))

    # -- signals ----------------------------------------------------------

    def kill_all(self, dyno_id: str, sig: int) -> None:
        # SIGKILL through the cgroup2 mount is atomic, when the host has one.
        if sig == signal.SIGKILL and self._unified:
            kill_file = self._unified / dyno_id / "cgroup.kill"
            if self.fs.exists(kill_file):
                write_control(self.fs, kill_file, "1")
                return

        # Otherwise freeze so nothing forks past us, signal each task, thaw.
        freezer = self._dir("freezer", dyno_id)
        if not self.fs.exists(freezer):
            return
        state = freezer / "freezer.state"
        write_control(self.fs, state, "FROZEN")
        try:
            self._wait_frozen(state)
            signal_pids(read_pids(self.fs, [freezer]), sig)
        finally:
            write_control(self.fs, state, "THAWED")

    def _wait_frozen(self, state: Path) -> None:
        deadline = time.monotonic() + FREEZE_TIMEOUT
        while read_control(self.fs, state) != "FROZEN":
            if time.monotonic() >= deadline:
                # Signal anyway: a task stuck in FREEZING still gets its signal
                # when thawed, and one that forks now is caught by the next call.
                log.warning("freeze_timeout", path=str(state))
                return
            time.sleep(0.001)
