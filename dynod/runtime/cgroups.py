"""Control groups for dynos: one interface over cgroup v1 (and hybrid) and v2.

Every dyno gets its own cgroup (v2) or one cgroup per controller hierarchy (v1)
at ``<hierarchy>/<instance>/dynos/<dyno_id>``.  The limits come from the dyno's
:class:`~dynod.runtime.spec.Size`; the kernel enforces them, so a dyno that
outgrows its memory is OOM-killed inside its own cgroup and a fork bomb stops at
its pids limit.

:func:`open_cgroups` picks the backend for the host:

* pure v2 (``/sys/fs/cgroup`` is a cgroup2 filesystem): one tree, controllers
  delegated through ``cgroup.subtree_control`` of every ancestor
  (:mod:`dynod.runtime.cgroups_v2`);
* v1 or hybrid: a cgroup in each of the memory, cpu, cpuacct, pids and freezer
  hierarchies, found through mountinfo, plus one on the cgroup2 mount when there
  is one, for ``cgroup.kill`` and ``cgroup.events``
  (:mod:`dynod.runtime.cgroups_v1`).

Processes must join every cgroup before they unshare their cgroup namespace
(else ``/proc/self/cgroup`` inside shows paths above the namespace root); the
launcher does that by writing its pid into ``cgroup.procs`` of every directory
from :meth:`Cgroups.paths`.

All file access goes through :class:`CgroupFs`, the seam that lets unit tests
run both backends against a fake tree in a temporary directory.
"""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import ctypes.util
import enum
import errno
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from dynod.errors import CgroupError
from dynod.runtime.spec import Size

CGROUP_ROOT = Path("/sys/fs/cgroup")
MOUNTINFO = Path("/proc/self/mountinfo")
# statfs(2) f_type of a cgroup2 filesystem (CGROUP2_SUPER_MAGIC in linux/magic.h).
CGROUP2_SUPER_MAGIC = 0x63677270
# How long remove() keeps retrying rmdir: the kernel frees a cgroup only once
# its last task is fully gone, which lags the task's exit by a little.
REMOVE_TIMEOUT = 2.0


class CgroupMode(enum.Enum):
    """Which cgroup API the host offers; hybrid hosts count as V1."""

    V1 = "v1"
    V2 = "v2"


class Cgroups(Protocol):
    """The cgroups of one daemon instance: every dyno's, and their parents."""

    mode: CgroupMode

    def create(self, dyno_id: str, size: Size) -> None:
        """Make the dyno's cgroups and set their limits; idempotent.

        Raises :class:`CgroupError` when a directory cannot be made or a limit
        is refused.
        """

    def attach(self, dyno_id: str, pid: int) -> None:
        """Move ``pid`` into every cgroup of the dyno."""

    def procs(self, dyno_id: str) -> builtins.list[int]:
        """Every pid in the dyno's cgroups, sorted; empty when there are none."""

    def memory(self, dyno_id: str) -> tuple[int, int]:
        """The dyno's memory use and limit, in bytes."""

    def oom_kills(self, dyno_id: str) -> int:
        """How many processes the kernel's OOM killer killed in the dyno."""

    def cpu_seconds(self, dyno_id: str) -> float:
        """CPU time used by every process of the dyno so far."""

    def pids_current(self, dyno_id: str) -> int:
        """How many tasks the dyno holds, as its pids controller counts them."""

    def kill_all(self, dyno_id: str, sig: int) -> None:
        """Send ``sig`` to every process of the dyno, including ones forking.

        A dyno whose cgroups are already gone has nothing to signal.
        """

    def remove(self, dyno_id: str) -> None:
        """Remove the dyno's cgroups, retrying while the kernel releases them.

        Missing cgroups are fine.  Raises :class:`CgroupError` when one is still
        busy after about two seconds (kill the processes first).
        """

    def list(self) -> builtins.list[str]:
        """Ids of the dynos that currently have cgroups, sorted."""

    def paths(self, dyno_id: str) -> builtins.list[Path]:
        """Every cgroup directory of the dyno (whether or not it exists yet)."""

    def enter_daemon_leaf(self, pid: int) -> None:
        """Move the daemon into ``<instance>/daemon`` on v2 (a no-op on v1).

        cgroup v2 forbids enabling controllers for children of a cgroup that
        holds processes, so a daemon started inside the delegated root must
        leave it before the first :meth:`create`.
        """

    def destroy(self) -> None:
        """Remove the instance's own parent cgroups once every dyno is gone.

        Raises :class:`CgroupError` when a dyno's cgroup still exists.
        """


class CgroupFs:
    """The file operations cgroups need, over the real cgroup filesystems.

    Unit tests subclass this to emulate what the kernel does on mkdir, rmdir
    and writes (control files appearing, ``EBUSY`` while populated, ...).
    """

    def mkdir(self, path: Path) -> None:
        """Make one directory; an existing one is fine."""
        with contextlib.suppress(FileExistsError):
            os.mkdir(path)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def exists(self, path: Path) -> bool:
        return path.exists()

    def read(self, path: Path) -> str:
        return path.read_text()

    def write(self, path: Path, value: str) -> None:
        """Write ``value`` in one write(2): cgroup files act on each write."""
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def subdirs(self, path: Path) -> builtins.list[str]:
        try:
            return sorted(p.name for p in path.iterdir() if p.is_dir())
        except FileNotFoundError:
            return []


def write_control(fs: CgroupFs, path: Path, value: str) -> None:
    """Write a control file, turning the kernel's refusal into a CgroupError."""
    try:
        fs.write(path, value)
    except OSError as exc:
        raise CgroupError(
            f"Could not write {value!r} to {path}: {exc.strerror or exc}. "
            "Check that dynod runs as root and owns this cgroup hierarchy."
        ) from exc


def read_control(fs: CgroupFs, path: Path) -> str:
    try:
        return fs.read(path).strip()
    except OSError as exc:
        raise CgroupError(
            f"Could not read {path}: {exc.strerror or exc}. "
            "Check that the dyno's cgroups exist (was the dyno created?)."
        ) from exc


def read_keyed(fs: CgroupFs, path: Path, key: str) -> int:
    """The value of ``key`` in a flat-keyed file such as ``memory.events``."""
    for line in read_control(fs, path).splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    raise CgroupError(
        f"{path} has no {key!r} entry; this kernel may be too old for dynod."
    )


def read_pids(fs: CgroupFs, dirs: Iterable[Path]) -> list[int]:
    """The union of ``cgroup.procs`` of ``dirs``; missing directories are empty."""
    pids: set[int] = set()
    for d in dirs:
        try:
            text = fs.read(d / "cgroup.procs")
        except FileNotFoundError:
            continue
        pids.update(int(p) for p in text.split())
    return sorted(pids)


def signal_pids(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        # A task that exited after cgroup.procs was read has nothing to signal.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def remove_dirs(
    fs: CgroupFs,
    dirs: list[Path],
    timeout: float = REMOVE_TIMEOUT,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """rmdir each of ``dirs`` (in order), retrying ``EBUSY`` until ``timeout``."""
    deadline = clock() + timeout
    for d in dirs:
        while True:
            try:
                fs.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    raise CgroupError(
                        f"Could not remove cgroup {d}: {exc.strerror or exc}."
                    ) from exc
                if clock() >= deadline:
                    pids = read_pids(fs, [d])
                    raise CgroupError(
                        f"Cgroup {d} is still busy after {timeout:.0f} s "
                        f"(processes {pids or 'none, or child cgroups'}); "
                        "kill its processes, then remove it again."
                    ) from exc
                time.sleep(0.01)


def _statfs_type(path: Path) -> int:
    """statfs(2) ``f_type`` of the filesystem holding ``path``."""
    # struct statfs starts with f_type (a long on every Linux ABI dynod runs on);
    # 120 bytes covers the whole struct on x86_64 and aarch64.
    buf = ctypes.create_string_buffer(256)
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.statfs(os.fsencode(path), buf) != 0:
        err = ctypes.get_errno()
        raise CgroupError(
            f"statfs({path}) failed: {os.strerror(err)}. Is cgroupfs mounted there?"
        )
    return int(ctypes.c_long.from_buffer(buf).value)


def detect_mode(
    root: Path = CGROUP_ROOT, fs_type: Callable[[Path], int] = _statfs_type
) -> CgroupMode:
    """V2 when ``root`` is itself a cgroup2 filesystem, else V1 (v1 or hybrid)."""
    return CgroupMode.V2 if fs_type(root) == CGROUP2_SUPER_MAGIC else CgroupMode.V1


def open_cgroups(
    instance: str,
    root: Path = CGROUP_ROOT,
    mountinfo: Path = MOUNTINFO,
    mode: CgroupMode | None = None,
    fs: CgroupFs | None = None,
) -> Cgroups:
    """The cgroups backend of ``instance`` for this host.

    ``mode`` and ``fs`` are for tests; by default the mode is detected from
    ``root`` and files are the real ones.  Raises :class:`CgroupError` when a
    needed controller is not mounted.
    """
    # Imported here: both backends build on this module's helpers.
    from dynod.runtime.cgroups_v1 import CgroupsV1, parse_mountinfo
    from dynod.runtime.cgroups_v2 import CgroupsV2

    fs = fs or CgroupFs()
    if (mode or detect_mode(root)) is CgroupMode.V2:
        return CgroupsV2(instance, root, fs)
    return CgroupsV1(instance, parse_mountinfo(mountinfo.read_text()), fs)
