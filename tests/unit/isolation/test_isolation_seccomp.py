"""The seccomp filter, loaded for real into a forked child (no root needed).

Loading a filter needs only no_new_privs, so these tests run anywhere; as root
the same calls would succeed without the filter, which is what makes them able
to fail.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import os
import platform
import socket
import struct
from collections.abc import Callable

import pytest

from dynod.runtime import seccomp
from dynod.runtime import syscalls as sc

libc = ctypes.CDLL(None, use_errno=True)
NR = {
    "x86_64": {
        "clone": 56, "clone3": 435, "keyctl": 250, "ptrace": 101, "bpf": 321,
        "socket": 41,
    },
    "aarch64": {
        "clone": 220, "clone3": 435, "keyctl": 219, "ptrace": 117, "bpf": 280,
        "socket": 198,
    },
}[platform.machine()]  # fmt: skip
# Denied after review of the calls from 450 on.  Each is harmless with zero
# arguments even unfiltered, as root; not every denied call is (sethostname
# would blank the host's name), so the sweep of all of them runs in a dyno.
NEWLY_DENIED = {
    "set_mempolicy_home_node": 450,
    "lsm_get_self_attr": 459,
    "lsm_set_self_attr": 460,
    "lsm_list_modules": 461,
    "file_getattr": 468,
    "file_setattr": 469,
}
# Reviewed and allowed; with zero arguments each fails or does nothing.
REVIEWED_ALLOWED = {
    "cachestat": 451,
    "fchmodat2": 452,
    "futex_wake": 454,
    "futex_wait": 455,
    "futex_requeue": 456,
    "statmount": 457,
    "listmount": 458,
    "mseal": 462,
    "setxattrat": 463,
    "getxattrat": 464,
    "listxattrat": 465,
    "removexattrat": 466,
}
CLONE_NEWUSER = 0x10000000
SIGCHLD = 17


def raw(number: int, *args: int) -> int:
    """A raw system call; returns 0 or the errno it failed with."""
    result = libc.syscall(ctypes.c_long(number), *[ctypes.c_long(a) for a in args])
    return 0 if result >= 0 else ctypes.get_errno()


def under_filter(attempts: dict[str, Callable[[], int]]) -> dict[str, int]:
    """Run each attempt in a child that loaded the filter; errno per attempt."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
            seccomp.install()
            results = {name: attempt() for name, attempt in attempts.items()}
            os.write(write_end, json.dumps(results).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    assert data, "the child died before reporting"
    results: dict[str, int] = json.loads(data)
    return results


def libc_errno(call: Callable[[], int]) -> Callable[[], int]:
    def attempt() -> int:
        return 0 if call() == 0 else ctypes.get_errno()

    return attempt


def fork_and_reap() -> int:
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    return 0


def test_namespace_and_mount_calls_fail_with_eperm() -> None:
    results = under_filter(
        {
            "unshare_user": libc_errno(lambda: libc.unshare(CLONE_NEWUSER)),
            "mount": libc_errno(
                lambda: libc.mount(b"none", b"/tmp", b"tmpfs", ctypes.c_ulong(0), None)
            ),
            "clone_newuser": lambda: raw(NR["clone"], CLONE_NEWUSER | SIGCHLD, 0, 0, 0),
            "keyctl": lambda: raw(NR["keyctl"], 0, 0),
            "ptrace": lambda: raw(NR["ptrace"], 16, 1),  # PTRACE_ATTACH to pid 1
            "bpf": lambda: raw(NR["bpf"], 0, 0, 0),
        }
    )
    assert results == {name: errno.EPERM for name in results}


def test_clone3_is_enosys_so_libc_falls_back_to_clone() -> None:
    args = ctypes.create_string_buffer(struct.pack("=11Q", *([0] * 11)))
    results = under_filter(
        {
            "clone3": lambda: raw(NR["clone3"], ctypes.addressof(args), 88),
            "fork": fork_and_reap,
        }
    )
    assert results == {"clone3": errno.ENOSYS, "fork": 0}


def test_calls_newer_than_the_policy_do_not_exist() -> None:
    # This kernel has no such calls yet, so the program itself is checked.
    code = seccomp.program("x86_64")
    guard = struct.pack("=HBBI", 0x35, 0, 1, seccomp.FIRST_UNREVIEWED)
    enosys = struct.pack("=HBBI", 0x06, 0, 0, seccomp.RET_ERRNO | errno.ENOSYS)
    assert guard + enosys in code


def test_vsock_sockets_fail_with_eperm_and_other_families_work() -> None:
    number = NR["socket"]
    results = under_filter(
        {
            "vsock_stream": lambda: raw(
                number, seccomp.AF_VSOCK, socket.SOCK_STREAM, 0
            ),
            "vsock_dgram": lambda: raw(number, seccomp.AF_VSOCK, socket.SOCK_DGRAM, 0),
            # The kernel reads the family as an int, dropping the high bits.
            "vsock_high_bits": lambda: raw(
                number, (1 << 32) | seccomp.AF_VSOCK, socket.SOCK_STREAM, 0
            ),
            "inet": lambda: raw(number, socket.AF_INET, socket.SOCK_STREAM, 0),
            "unix": lambda: raw(number, socket.AF_UNIX, socket.SOCK_STREAM, 0),
        }
    )
    assert results == {
        "vsock_stream": errno.EPERM,
        "vsock_dgram": errno.EPERM,
        "vsock_high_bits": errno.EPERM,
        "inet": 0,
        "unix": 0,
    }


def test_numa_home_node_lsm_and_file_attr_calls_fail_with_eperm() -> None:
    results = under_filter(
        {
            name: functools.partial(raw, nr, 0, 0, 0, 0, 0)
            for name, nr in NEWLY_DENIED.items()
        }
    )
    assert results == {name: errno.EPERM for name in NEWLY_DENIED}


def test_reviewed_new_calls_get_the_kernels_own_answer() -> None:
    # Whatever the kernel says unfiltered (EFAULT, EINVAL, 0; ENOSYS where it
    # is older than the call), it must say filtered: the filter stays out.
    calls = {
        name: functools.partial(raw, nr, 0, 0, 0, 0, 0)
        for name, nr in REVIEWED_ALLOWED.items()
    }
    unfiltered = {name: call() for name, call in calls.items()}
    assert errno.EPERM not in unfiltered.values()
    assert under_filter(calls) == unfiltered


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_program_refuses_vsock_by_the_family_argument(machine: str) -> None:
    code = seccomp.program(machine)
    rule = b"".join(
        struct.pack("=HBBI", *insn)
        for insn in (
            (0x15, 0, 4, seccomp.SOCKET[machine]),  # socket?
            (0x20, 0, 0, 16),  # load args[0]
            (0x15, 0, 1, seccomp.AF_VSOCK),
            (0x06, 0, 0, seccomp.RET_ERRNO | errno.EPERM),
            (0x06, 0, 0, seccomp.RET_ALLOW),
        )
    )
    assert rule in code


def test_personality_allows_only_the_usual_values() -> None:
    results = under_filter(
        {
            "query": lambda: 0 if libc.personality(0xFFFFFFFF) >= 0 else -1,
            # ADDR_NO_RANDOMIZE would switch off ASLR for what is exec'd next.
            "no_aslr": libc_errno(lambda: min(0, libc.personality(0x0040000))),
        }
    )
    assert results == {"query": 0, "no_aslr": errno.EPERM}


def test_ordinary_calls_still_work() -> None:
    results = under_filter(
        {
            "getpid": lambda: 0 if os.getpid() > 0 else 1,
            "pipe": lambda: [os.close(fd) for fd in os.pipe()] and 0,
        }
    )
    assert results == {"getpid": 0, "pipe": 0}


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_program_checks_the_architecture_first_and_ends_allowing(
    machine: str,
) -> None:
    code = seccomp.program(machine)
    insns = [struct.unpack("=HBBI", code[i : i + 8]) for i in range(0, len(code), 8)]

    # Load arch; if not native, kill the process.
    assert insns[0] == (0x20, 0, 0, 4)
    assert insns[1] == (0x15, 1, 0, seccomp.AUDIT_ARCH[machine])
    assert insns[2] == (0x06, 0, 0, seccomp.RET_KILL_PROCESS)
    assert insns[-1] == (0x06, 0, 0, seccomp.RET_ALLOW)
    # Every jump lands inside the program.
    for index, (code_, jt, jf, _) in enumerate(insns):
        if code_ & 0x07 == 0x05:
            assert index + 1 + max(jt, jf) < len(insns)
    assert len(insns) < 4096
