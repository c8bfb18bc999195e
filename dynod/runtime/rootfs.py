"""The dyno's root filesystem, built inside its fresh mount namespace.

Layout (everything writable lives on one size-limited tmpfs, so a dyno cannot
fill the host's disk and its writes vanish with it)::

    <scratch>            tmpfs, size = ephemeral_bytes, nosuid,nodev
    ├── upper/           overlay upper dir, root-owned 0755 (owner of "/")
    │   └── app/         owned by the dyno uid, so the merged /app is writable
    ├── work/            overlay work dir
    └── root/            overlay: lowerdir=<slug>:<stack> (builds: the stack)
        ├── proc         a proc for the dyno's PID namespace, with the host-
        │                wide files masked or read-only (:func:`mask_proc`)
        ├── sys          left empty: no sysfs, the host's devices stay unseen
        ├── dev          tmpfs: null zero full random urandom tty, pts, shm
        ├── tmp          1777, on the overlay (counts against the tmpfs)
        └── <binds>      nosuid,nodev, read-only when asked

overlayfs ignores mounts inside a lower layer, so the stack must be a real
directory tree and binds go on top of the merged root.  The merged root takes
its owner and mode from the upper dir.  Only :mod:`dynod.runtime.launcher`
calls this, in the dyno's PID 1 before it drops privileges.
"""

from __future__ import annotations

import os

from dynod.runtime import syscalls as sc
from dynod.runtime.plan import LaunchPlan

_WRITABLE = sc.MS_NOSUID | sc.MS_NODEV
_READONLY = sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
# Under /proc: covered (files by /dev/null, directories by an empty tmpfs) ...
_PROC_MASKED = (
    "acpi",
    "asound",
    "kcore",
    "keys",
    "key-users",
    "kmsg",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "scsi",
)
# ... and frozen read-only.
_PROC_READONLY = ("bus", "fs", "irq", "sys", "sysrq-trigger")


def build_root(plan: LaunchPlan, scratch: str) -> str:
    """Mount the dyno's root under ``scratch``; return the new root's path."""
    # Nothing mounted from here on may propagate back to the host.
    sc.mount("none", "/", None, sc.MS_REC | sc.MS_PRIVATE)

    # The ephemeral layer: one tmpfs bounds every write the dyno makes.
    sc.mount(
        "dyno", scratch, "tmpfs", _WRITABLE, f"size={plan.ephemeral_bytes},mode=0755"
    )
    upper, work, root = (os.path.join(scratch, d) for d in ("upper", "work", "root"))
    for d in (upper, work, root):
        os.mkdir(d, 0o755)

    # The overlay: slug over stack, writes to the tmpfs.
    lower = plan.stack_dir
    if plan.slug_dir:
        lower = f"{plan.slug_dir}:{plan.stack_dir}"
        app = os.path.join(upper, "app")
        os.mkdir(app, 0o755)
        os.chown(app, plan.uid, plan.gid)
    sc.mount(
        "overlay",
        root,
        "overlay",
        _WRITABLE,
        f"lowerdir={lower},upperdir={upper},workdir={work}",
    )

    # Binds go on the merged root, where their targets can be created.
    for bind in plan.binds:
        target = root + bind.target
        if os.path.isdir(bind.source):
            os.makedirs(target, exist_ok=True)
        elif not os.path.exists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
        sc.mount(bind.source, target, None, sc.MS_BIND | sc.MS_REC)
        flags = sc.MS_BIND | sc.MS_REMOUNT | _WRITABLE
        sc.mount("none", target, None, flags | (sc.MS_RDONLY if bind.readonly else 0))

    # proc must be mounted while the old root is still attached (else EPERM).
    proc = os.path.join(root, "proc")
    os.makedirs(proc, exist_ok=True)
    sc.mount("proc", proc, "proc", _WRITABLE | sc.MS_NOEXEC)
    mask_proc(proc)
    _build_dev(os.path.join(root, "dev"))

    # /tmp lives on the overlay, so it counts against the ephemeral limit.
    tmp = os.path.join(root, "tmp")
    os.makedirs(tmp, exist_ok=True)
    os.chmod(tmp, 0o1777)
    return root


def mask_proc(proc: str) -> None:
    """Hide or freeze the parts of ``proc`` that speak for the whole host.

    A PID namespace hides other processes, but many files under /proc are
    global: kernel memory, keyrings, timers, the sysctls, the magic SysRq key.
    Files are covered with the host's /dev/null, directories with an empty
    read-only tmpfs, and the writable global ones are made read-only, so even
    a process that somehow regained root could not change the host through
    them.  The same list as Docker's and runc's defaults, plus kmsg.
    """
    for name in _PROC_MASKED:
        path = os.path.join(proc, name)
        if os.path.isdir(path):
            sc.mount("masked", path, "tmpfs", _READONLY, "size=0,mode=0555")
        elif os.path.exists(path):
            # Reads give nothing, writes fail: /dev/null's node, read-only.
            sc.mount("/dev/null", path, None, sc.MS_BIND)
            flags = sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID
            sc.mount("none", path, None, flags | sc.MS_NOEXEC)
    for name in _PROC_READONLY:
        path = os.path.join(proc, name)
        if os.path.exists(path):
            sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
            sc.mount("none", path, None, sc.MS_BIND | sc.MS_REMOUNT | _READONLY)


def _build_dev(dev: str) -> None:
    """A minimal /dev: a few host devices, a private devpts and a shm tmpfs."""
    os.makedirs(dev, exist_ok=True)
    sc.mount("dev", dev, "tmpfs", _WRITABLE | sc.MS_NOEXEC, "size=64k,mode=0755")
    # The device nodes are bind mounts of the host's (a nodev tmpfs could not
    # hold working nodes): device access stays, nosuid and noexec are added.
    for name in _DEVICES:
        node = os.path.join(dev, name)
        os.close(os.open(node, os.O_CREAT | os.O_WRONLY, 0o666))
        sc.mount(f"/dev/{name}", node, None, sc.MS_BIND)
        flags = sc.MS_BIND | sc.MS_REMOUNT | sc.MS_NOSUID | sc.MS_NOEXEC
        sc.mount("none", node, None, flags)
    pts = os.path.join(dev, "pts")
    os.mkdir(pts, 0o755)
    sc.mount(
        "devpts",
        pts,
        "devpts",
        sc.MS_NOSUID | sc.MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    )
    os.symlink("pts/ptmx", os.path.join(dev, "ptmx"))
    shm = os.path.join(dev, "shm")
    os.mkdir(shm)
    sc.mount("shm", shm, "tmpfs", _WRITABLE, "mode=1777,size=67108864")
    for link, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, os.path.join(dev, link))


def enter_root(root: str) -> None:
    """Make ``root`` the root of this mount namespace and drop the old one."""
    os.chdir(root)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")
