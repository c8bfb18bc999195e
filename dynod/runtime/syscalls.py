"""The few Linux system calls the launcher needs that Python 3.11 lacks.

Each wrapper raises :class:`OSError` with the kernel's errno, so callers can
translate it into a :class:`dynod.errors.RuntimeFailure` naming what failed.
Only the launcher (running in a freshly forked child) calls these.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import signal
import struct

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

MNT_DETACH = 0x2

PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
# Highest capability number a kernel this old knows (CAP_CHECKPOINT_RESTORE);
# newer kernels say theirs in /proc/sys/kernel/cap_last_cap.
CAP_LAST_CAP = 40

# pivot_root has no glibc wrapper; its number differs per architecture.
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(
    source: str, target: str, fstype: str | None, flags: int = 0, data: str = ""
) -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {fstype or 'bind'} {source} on {target}",
    )


def umount2(target: str, flags: int) -> None:
    _check(_libc.umount2(target.encode(), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    number = _PIVOT_ROOT[platform.machine()]
    _check(
        _libc.syscall(ctypes.c_long(number), new_root.encode(), put_old.encode()),
        "pivot_root",
    )


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), f"sethostname {name}")


def prctl(option: int, arg: int, arg3: int = 0) -> None:
    _check(_libc.prctl(option, arg, arg3, 0, 0), f"prctl {option}")


def prctl_pointer(option: int, arg: int, pointer: int) -> None:
    """prctl with a pointer as its third argument (PR_SET_SECCOMP)."""
    _check(_libc.prctl(option, arg, pointer, 0, 0), f"prctl {option}")


def cap_last_cap() -> int:
    """The highest capability number this kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return CAP_LAST_CAP


def drop_bounding_set(last_cap: int) -> None:
    """Empty the capability bounding set (needs CAP_SETPCAP, so call as root).

    Nothing exec'd afterwards can gain a capability, not even from a file
    capability or a setuid-root binary (capabilities(7), "bounding set").
    """
    for cap in range(last_cap + 1):
        prctl(PR_CAPBSET_DROP, cap)


# capset(2) has no glibc wrapper; _LINUX_CAPABILITY_VERSION_3 takes two data
# structs (capabilities 0-31 and 32-63) of effective, permitted, inheritable.
_CAPSET = {"x86_64": 126, "aarch64": 91}
_CAP_VERSION_3 = 0x20080522


def clear_capabilities() -> None:
    """Empty the effective, permitted, inheritable and ambient sets."""
    header = ctypes.create_string_buffer(struct.pack("=Ii", _CAP_VERSION_3, 0))
    data = ctypes.create_string_buffer(struct.pack("=6I", 0, 0, 0, 0, 0, 0))
    number = _CAPSET[platform.machine()]
    _check(_libc.syscall(ctypes.c_long(number), header, data), "capset")
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)


CLONE_INTO_CGROUP = 0x200000000
_CLONE3 = 435  # the same number on x86_64 and aarch64
_CLONE_ARGS = struct.Struct("=11Q")
# Called with the GIL held, like os.fork(), so the child starts in a sane state.
_pylibc = ctypes.PyDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def fork_into_cgroup(cgroup_fd: int) -> int:
    """fork(), with the child born in the cgroup2 cgroup open at ``cgroup_fd``.

    Unlike writing a pid to ``cgroup.procs``, this takes no global write lock,
    so it costs no RCU grace period.  Returns 0 in the child, its pid in the
    parent; raises OSError (ENOSYS before Linux 5.7) when clone3 refuses.
    """
    args = ctypes.create_string_buffer(
        _CLONE_ARGS.pack(
            CLONE_INTO_CGROUP, 0, 0, 0, signal.SIGCHLD, 0, 0, 0, 0, 0, cgroup_fd
        )
    )
    ctypes.pythonapi.PyOS_BeforeFork()
    pid = _pylibc.syscall(
        ctypes.c_long(_CLONE3), args, ctypes.c_size_t(_CLONE_ARGS.size)
    )
    if pid == 0:
        ctypes.pythonapi.PyOS_AfterFork_Child()
    else:
        errno = ctypes.get_errno()
        ctypes.pythonapi.PyOS_AfterFork_Parent()
        if pid < 0:
            raise OSError(errno, f"clone3: {os.strerror(errno)}")
    return int(pid)
