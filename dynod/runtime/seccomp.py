"""The dyno's seccomp filter: a classic BPF program, built and loaded with ctypes.

Why not libseccomp: Debian's ``python3-seccomp`` binding is built for the
distribution's interpreter only (``/usr/bin/python3``), not for the one dynod
runs on, and there is no maintained wheel on PyPI.  The policy is small enough
to write as BPF directly, which also keeps the launcher free of a C library
that would have to be loaded into every dyno's PID 1.

Policy (at least as strict as Docker's default profile, stricter where a dyno
has no use for a call: ptrace, unshare, chroot and io_uring are refused
outright instead of depending on capabilities):

* the architecture must be the host's own (``AUDIT_ARCH_X86_64`` or
  ``AUDIT_ARCH_AARCH64``); a system call made through another ABI (32-bit
  ``int 0x80`` on x86_64) kills the process, because its numbers mean other
  calls.  On x86_64 the x32 ABI (numbers with bit 30 set) gets EPERM;
* every call in :data:`DENIED` fails with EPERM: mounts and the new mount API,
  ``pivot_root``/``chroot``, modules, kexec, keyrings, bpf, perf, userfaultfd,
  io_uring, ``unshare``/``setns``, ptrace and cross-process memory access,
  handle-based opens, swap, reboot, syslog, accounting, clocks, quotas, NUMA
  policy (``set_mempolicy_home_node`` too), the LSM attribute calls, the
  path-based inode attribute calls, hostname and the legacy x86 calls (port
  I/O, LDT, ...);
* ``clone`` with any namespace flag (``CLONE_NEWUSER`` included) fails with
  EPERM; ``clone3`` fails with ENOSYS, because its flags sit in memory a filter
  cannot read, and ENOSYS makes glibc fall back to ``clone``;
* ``socket`` for ``AF_VSOCK`` fails with EPERM: vsock is not held by the
  dyno's network namespace, so it would reach the hypervisor, the host's own
  vsock services and its guests, paths no firewall rule of dynod sees;
* ``personality`` is allowed only for the values programs use in practice
  (Linux, 32-bit Linux, ``UNAME26``, and the query); turning off address space
  randomisation (``ADDR_NO_RANDOMIZE``) for what is exec'd next is refused;
* calls newer than the policy (numbers from :data:`FIRST_UNREVIEWED`) fail
  with ENOSYS, so a future kernel's additions stay closed until reviewed;
* everything else is allowed; capabilities, the uid and the mounts decide it.

The calls numbered 450 up to :data:`FIRST_UNREVIEWED` (Linux 5.17 to 6.17)
were each held against Docker's default profile for a container without
capabilities, and are denied wherever Docker denies them:

* denied: ``set_mempolicy_home_node`` (Docker: CAP_SYS_NICE only, as for the
  rest of NUMA policy); ``lsm_get_self_attr``, ``lsm_set_self_attr`` and
  ``lsm_list_modules`` (Docker: CAP_SYS_ADMIN only; setting one's own LSM
  label is what ``/proc/self/attr`` guards, and the getters go with the
  setter so a program finds the interface whole or absent);
  ``open_tree_attr`` (the mount API); ``file_getattr`` and ``file_setattr``
  (newer than Docker's profile, so refused by its default action);
* allowed, as by Docker: ``cachestat`` (page-cache state of a file the caller
  has open, what ``mincore`` tells of a mapping), ``fchmodat2``,
  ``map_shadow_stack`` and ``mseal`` (the caller's own memory), the futex2
  calls, and the ``*xattrat`` calls (``*xattr`` by descriptor and path, under
  the same permission checks);
* allowed, as by Docker: ``statmount`` and ``listmount``.  They answer only
  for the caller's own mount namespace and for mounts reachable from its root
  (anything else needs CAP_SYS_ADMIN over that namespace), which is what
  ``/proc/self/mountinfo`` already shows a dyno: its own root and masks,
  nothing of the host's mounts.

The kernel caches "always allowed" results per system call number (Linux 5.11,
``SECCOMP_ARCH_NATIVE`` bitmap), so the ordinary calls of an app pay nothing
for the length of the deny list.  Kernel docs:
``Documentation/userspace-api/seccomp_filter.rst``.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import platform
import struct

from dynod.runtime import syscalls as sc

# <linux/audit.h>: EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE, and aarch64's.
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000

# <linux/seccomp.h> return actions.
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000

# <linux/filter.h> opcodes: BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, ...
_LD_ABS = 0x20
_JEQ = 0x15
_JGE = 0x35
_JSET = 0x45
_RET = 0x06

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6].
_OFF_NR = 0
_OFF_ARCH = 4
# Low 32 bits of args[0] (both supported architectures are little-endian).
_OFF_ARG0 = 16

# Every namespace flag of clone(2): NEWTIME, NEWNS, NEWCGROUP, NEWUTS, NEWIPC,
# NEWUSER, NEWPID, NEWNET.
CLONE_NAMESPACES = 0x00000080 | 0x7E020000
# <linux/socket.h>: the only family socket(2) refuses (Docker's rule).
AF_VSOCK = 40
# personality(2) values allowed (Docker's list): PER_LINUX, UNAME26,
# PER_LINUX32, PER_LINUX32|UNAME26, and 0xffffffff (query only).
PERSONALITIES = (0x0, 0x0020000, 0x0008, 0x0020008, 0xFFFFFFFF)

# name -> (x86_64 number, aarch64 number); None where the call does not exist.
DENIED: dict[str, tuple[int | None, int | None]] = {
    "acct": (163, 89),
    "add_key": (248, 217),
    "bpf": (321, 280),
    "chroot": (161, 51),
    "clock_adjtime": (305, 266),
    "clock_settime": (227, 112),
    "create_module": (174, None),
    "delete_module": (176, 106),
    "fanotify_init": (300, 262),
    "file_getattr": (468, 468),
    "file_setattr": (469, 469),
    "finit_module": (313, 273),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fsopen": (430, 430),
    "fspick": (433, 433),
    "get_kernel_syms": (177, None),
    "get_mempolicy": (239, 236),
    "init_module": (175, 105),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    "io_uring_setup": (425, 425),
    "ioperm": (173, None),
    "iopl": (172, None),
    "kcmp": (312, 272),
    "kexec_file_load": (320, 294),
    "kexec_load": (246, 104),
    "keyctl": (250, 219),
    "lookup_dcookie": (212, 18),
    "lsm_get_self_attr": (459, 459),
    "lsm_list_modules": (461, 461),
    "lsm_set_self_attr": (460, 460),
    "mbind": (237, 235),
    "migrate_pages": (256, 238),
    "modify_ldt": (154, None),
    "mount": (165, 40),
    "mount_setattr": (442, 442),
    "move_mount": (429, 429),
    "move_pages": (279, 239),
    "name_to_handle_at": (303, 264),
    "nfsservctl": (180, 42),
    "open_by_handle_at": (304, 265),
    "open_tree": (428, 428),
    "open_tree_attr": (467, 467),
    "perf_event_open": (298, 241),
    "pidfd_getfd": (438, 438),
    "pivot_root": (155, 41),
    "process_madvise": (440, 440),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "ptrace": (101, 117),
    "query_module": (178, None),
    "quotactl": (179, 60),
    "quotactl_fd": (443, 443),
    "reboot": (169, 142),
    "request_key": (249, 218),
    "set_mempolicy": (238, 237),
    "set_mempolicy_home_node": (450, 450),
    "setdomainname": (171, 162),
    "sethostname": (170, 161),
    "setns": (308, 268),
    "settimeofday": (164, 170),
    "swapoff": (168, 225),
    "swapon": (167, 224),
    "_sysctl": (156, None),
    "syslog": (103, 116),
    "sysfs": (139, None),
    "umount2": (166, 39),
    "unshare": (272, 97),
    "uselib": (134, None),
    "userfaultfd": (323, 282),
    "ustat": (136, None),
    "vhangup": (153, 58),
}
# Calls numbered from here on were added after this policy was reviewed
# (Linux 6.17 and 6.18 end at 469 on both): they get ENOSYS, as on an older
# kernel, until someone decides about them; a deny list alone would let them
# through.
FIRST_UNREVIEWED = 470
CLONE = {"x86_64": 56, "aarch64": 220}
CLONE3 = 435
SOCKET = {"x86_64": 41, "aarch64": 198}
PERSONALITY = {"x86_64": 135, "aarch64": 92}

PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
_INSN = struct.Struct("=HBBI")


def _stmt(code: int, k: int) -> bytes:
    return _INSN.pack(code, 0, 0, k)


def _jump(code: int, k: int, jt: int, jf: int) -> bytes:
    return _INSN.pack(code, jt, jf, k)


@functools.cache
def program(machine: str | None = None) -> bytes:
    """The filter for ``machine`` (default: this host) as packed sock_filters.

    Raises :class:`KeyError` for an architecture dynod has no table for.
    """
    arch = machine or platform.machine()
    column = 0 if arch == "x86_64" else 1
    eperm = _stmt(_RET, RET_ERRNO | errno.EPERM)
    insns: list[bytes] = []

    # Only the native ABI: another one's numbers mean other calls.
    insns += [
        _stmt(_LD_ABS, _OFF_ARCH),
        _jump(_JEQ, AUDIT_ARCH[arch], 1, 0),
        _stmt(_RET, RET_KILL_PROCESS),
        _stmt(_LD_ABS, _OFF_NR),
    ]
    if arch == "x86_64":
        insns += [_jump(_JGE, X32_SYSCALL_BIT, 0, 1), eperm]

    # Calls newer than this policy: as if the kernel did not have them.
    insns += [
        _jump(_JGE, FIRST_UNREVIEWED, 0, 1),
        _stmt(_RET, RET_ERRNO | errno.ENOSYS),
    ]

    # The flat deny list: one compare and one return each.
    for numbers in DENIED.values():
        number = numbers[column]
        if number is not None:
            insns += [_jump(_JEQ, number, 0, 1), eperm]

    # clone3 hides its flags from the filter: ENOSYS sends glibc back to clone.
    insns += [
        _jump(_JEQ, CLONE3, 0, 1),
        _stmt(_RET, RET_ERRNO | errno.ENOSYS),
    ]

    # clone: no new namespace of any kind.
    insns += [
        _jump(_JEQ, CLONE[arch], 0, 4),
        _stmt(_LD_ABS, _OFF_ARG0),
        _jump(_JSET, CLONE_NAMESPACES, 0, 1),
        eperm,
        _stmt(_RET, RET_ALLOW),
    ]

    # socket: any family but vsock.  The low half of args[0] is what the kernel
    # reads (the family is an int), so high bits set cannot slip a vsock past.
    insns += [
        _jump(_JEQ, SOCKET[arch], 0, 4),
        _stmt(_LD_ABS, _OFF_ARG0),
        _jump(_JEQ, AF_VSOCK, 0, 1),
        eperm,
        _stmt(_RET, RET_ALLOW),
    ]

    # personality: the listed values only.
    count = len(PERSONALITIES)
    insns += [_jump(_JEQ, PERSONALITY[arch], 0, count + 2), _stmt(_LD_ABS, _OFF_ARG0)]
    insns += [_jump(_JEQ, value, count - i, 0) for i, value in enumerate(PERSONALITIES)]
    insns += [eperm]

    # Everything else: the uid, capabilities and mounts decide.
    insns += [_stmt(_RET, RET_ALLOW)]
    return b"".join(insns)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> None:
    """Load the filter into this thread (it is inherited by every child).

    The caller must have set ``no_new_privs`` first, which is what lets a
    process without CAP_SYS_ADMIN load a filter.  Raises :class:`OSError` with
    the kernel's errno when the kernel refuses it.
    """
    code = program()
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = _SockFprog(len(code) // _INSN.size, ctypes.addressof(buffer))
    sc.prctl_pointer(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))
