"""Escape attempts through privileges and system calls, from inside a dyno.

Every attempt must fail for its own reason: EPERM from the seccomp filter or a
missing capability, never merely "some error".  Tests taking ``inside`` run
their attempt twice, from a one-off (``[dynoctl-run]``) and from the attacker's
web dyno (``[web-dyno]``).
"""

from __future__ import annotations

import platform
import resource
import shutil

import pytest
from escape_support import Runner, World

from dynod.runtime import privileges, seccomp
from dynod.runtime.spec import DEFAULT_SIZE, SIZES

pytestmark = pytest.mark.integration


def test_dyno_runs_as_its_apps_own_unprivileged_uid(
    world: World, inside: Runner
) -> None:
    ids = inside("result = [os.getuid(), os.geteuid(), os.getgid(), os.getgroups()]")
    uid = world.facts["uid"]
    assert uid >= 1000 and ids == [uid, uid, world.facts["gid"], []]


def test_dyno_has_no_capabilities_and_no_new_privs_and_seccomp(
    inside: Runner,
) -> None:
    status = inside(
        "result = dict(l.split(':\\t') for l in open('/proc/self/status').read()"
        ".splitlines() if l.startswith(('Cap', 'NoNewPrivs', 'Seccomp:')))"
    )
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[key], 16) == 0, key
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"  # filter mode


def test_mount_a_filesystem(inside: Runner) -> None:
    assert inside("result = sys_('mount', b'none', b'/tmp', b'tmpfs', 0, None)") == (
        "EPERM"
    )


def test_mount_through_the_new_mount_api(inside: Runner) -> None:
    assert inside("result = sys_('fsopen', b'tmpfs', 0)") == "EPERM"


def test_remount_root_writable(inside: Runner) -> None:
    # MS_REMOUNT | MS_BIND on /.
    assert inside("result = sys_('mount', None, b'/', None, 0x1020, None)") == ("EPERM")


def test_remount_the_stack_writable(inside: Runner) -> None:
    assert inside("result = sys_('mount', None, b'/usr', None, 0x20, None)") == (
        "EPERM"
    )


def test_unmount_a_mask(inside: Runner) -> None:
    assert inside("result = sys_('umount2', b'/proc/sys', 2)") == "EPERM"


def test_chroot(inside: Runner) -> None:
    assert inside("result = attempt(os.chroot, '/tmp')") == "EPERM"


def test_pivot_root(inside: Runner) -> None:
    assert inside("result = sys_('pivot_root', b'/tmp', b'/tmp')") == "EPERM"


def test_load_a_kernel_module(inside: Runner) -> None:
    result = inside(
        "fd = os.open('/usr/bin/true', os.O_RDONLY)\n"
        "result = [sys_('finit_module', fd, b'', 0),"
        " sys_('init_module', b'\\0' * 64, 64, b''), sys_('delete_module', b'x', 0)]"
    )
    assert result == ["EPERM"] * 3


def test_new_user_namespace(inside: Runner) -> None:
    # CLONE_NEWUSER, alone and through clone().
    result = inside(
        "result = [attempt(lambda: libc.unshare(0x10000000) == 0 or "
        "(_ for _ in ()).throw(OSError(ctypes.get_errno(), 'unshare'))),"
        " sys_('clone', 0x10000000 | 17, 0, 0, 0, 0)]"
    )
    assert result == ["EPERM", "EPERM"]


def test_join_the_hosts_namespaces(inside: Runner) -> None:
    # Even with a descriptor in hand, setns is refused.
    result = inside(
        "fd = os.open('/proc/self/ns/net', os.O_RDONLY)\nresult = sys_('setns', fd, 0)"
    )
    assert result == "EPERM"


def test_ptrace_another_process(inside: Runner) -> None:
    # PTRACE_ATTACH to the dyno's own init, which runs as the same uid.
    assert inside("result = sys_('ptrace', 16, 1, 0, 0)") == "EPERM"


def test_read_another_process_memory(inside: Runner) -> None:
    assert inside("result = sys_('process_vm_readv', 1, 0, 0, 0, 0, 0)") == ("EPERM")


def test_open_a_file_by_handle(inside: Runner) -> None:
    # The call behind the "shocker" escape from Docker 0.x.
    assert inside("result = sys_('open_by_handle_at', 3, 0, 0)") == "EPERM"


def test_keyctl_and_add_key(inside: Runner) -> None:
    result = inside(
        "result = [sys_('keyctl', 0, -3, 0), "
        "sys_('add_key', b'user', b'k', b'v', 1, -3)]"
    )
    assert result == ["EPERM", "EPERM"]


def test_bpf(inside: Runner) -> None:
    assert inside("result = sys_('bpf', 0, 0, 0)") == "EPERM"


def test_perf_event_open(inside: Runner) -> None:
    assert inside("result = sys_('perf_event_open', 0, 0, -1, -1, 0)") == "EPERM"


def test_userfaultfd(inside: Runner) -> None:
    assert inside("result = sys_('userfaultfd', 0)") == "EPERM"


def test_io_uring(inside: Runner) -> None:
    assert inside("result = sys_('io_uring_setup', 1, 0)") == "EPERM"


def test_kexec_a_new_kernel(inside: Runner) -> None:
    result = inside(
        "result = [sys_('kexec_load', 0, 0, 0, 0), "
        "sys_('kexec_file_load', -1, -1, 0, None, 0)]"
    )
    assert result == ["EPERM", "EPERM"]


def test_reboot_the_host(inside: Runner) -> None:
    # LINUX_REBOOT_MAGIC1, MAGIC2, CMD_POWER_OFF.
    assert inside("result = sys_('reboot', 0xFEE1DEAD, 672274793, 0x4321FEDC, 0)") == (
        "EPERM"
    )


def test_set_the_hostname(inside: Runner) -> None:
    assert inside("result = sys_('sethostname', b'pwned', 5)") == "EPERM"


def test_set_the_clock(inside: Runner) -> None:
    result = inside(
        "ts = ctypes.create_string_buffer(struct.pack('=qq', 0, 0))\n"
        "result = [sys_('clock_settime', 0, ctypes.addressof(ts)), "
        "sys_('settimeofday', ctypes.addressof(ts), 0)]"
    )
    assert result == ["EPERM", "EPERM"]


def test_read_the_kernel_log(inside: Runner) -> None:
    # SYSLOG_ACTION_READ_ALL.
    assert inside("result = sys_('syslog', 3, 0, 0)") == "EPERM"


def test_enable_swap(inside: Runner) -> None:
    assert inside("result = sys_('swapon', b'/tmp/swap', 0)") == "EPERM"


def test_open_a_raw_socket(inside: Runner) -> None:
    result = inside(
        "result = [attempt(socket.socket, socket.AF_INET, socket.SOCK_RAW, 1),"
        " attempt(socket.socket, socket.AF_PACKET, socket.SOCK_RAW, 0)]"
    )
    assert result == ["EPERM", "EPERM"]


def test_open_a_vsock_socket(inside: Runner) -> None:
    # The host's kernel has vsock (/dev/vsock), so only the filter says EPERM;
    # a kernel without it would say EAFNOSUPPORT.
    result = inside(
        "result = [attempt(socket.socket, socket.AF_VSOCK, kind)"
        " for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM)]"
    )
    assert result == ["EPERM", "EPERM"]


def test_every_denied_system_call_fails_with_eperm(inside: Runner) -> None:
    # The numbers of this host's architecture, straight from the policy, each
    # called with zero arguments: the filter answers before the kernel looks.
    column = 0 if platform.machine() == "x86_64" else 1
    calls = {
        call: numbers[column]
        for call, numbers in seccomp.DENIED.items()
        if numbers[column] is not None
    }
    got = inside(
        f"calls = {calls!r}\n"
        "zeros = [ctypes.c_long(0)] * 6\n"
        "result = {}\n"
        "for call, nr in calls.items():\n"
        "    rc = libc.syscall(ctypes.c_long(nr), *zeros)\n"
        "    result[call] = 'ok' if rc != -1 else name(ctypes.get_errno())\n"
    )
    wrong = {call: got.get(call) for call in calls if got.get(call) != "EPERM"}
    assert not wrong, f"denied calls that did not fail with EPERM: {wrong}"


# /proc/self/limits rows for the limits dynod lowers.
LIMIT_ROWS = {
    "Max open files": resource.RLIMIT_NOFILE,
    "Max processes": resource.RLIMIT_NPROC,
    "Max core file size": resource.RLIMIT_CORE,
    "Max locked memory": resource.RLIMIT_MEMLOCK,
    "Max realtime priority": resource.RLIMIT_RTPRIO,
    "Max nice priority": resource.RLIMIT_NICE,
}


def test_rlimits_are_lowered_soft_and_hard(inside: Runner) -> None:
    # The default size's dyno; a limit the daemon itself got lower stays lower.
    wanted = {
        resource.RLIMIT_NOFILE: privileges.NOFILE,
        resource.RLIMIT_NPROC: SIZES[DEFAULT_SIZE].pids * privileges.NPROC_DYNOS,
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_MEMLOCK: privileges.MEMLOCK,
        resource.RLIMIT_RTPRIO: 0,
        resource.RLIMIT_NICE: 0,
    }
    for which, value in wanted.items():
        hard = resource.getrlimit(which)[1]
        if hard != resource.RLIM_INFINITY:
            wanted[which] = min(value, hard)
    # Columns as the kernel prints them: name in 26, then soft, hard, units.
    rows = inside(
        "rows = open('/proc/self/limits').read().splitlines()[1:]\n"
        "result = {r[:26].strip(): r[26:].split()[:2] for r in rows}"
    )
    got = {which: rows[row] for row, which in LIMIT_ROWS.items()}
    assert got == {which: [str(v), str(v)] for which, v in wanted.items()}


def test_make_a_device_node(inside: Runner) -> None:
    # /dev/sda's numbers: with it, the host's disk could be read raw.
    result = inside(
        "import stat\n"
        "result = attempt(os.mknod, '/tmp/sda', stat.S_IFBLK | 0o600, os.makedev(8, 0))"
    )
    assert result == "EPERM"


def test_setuid_root_binary_in_the_slug_gives_no_root(
    world: World, inside: Runner
) -> None:
    # Planted by the host (a build could never make one): a setuid-root python.
    (slug,) = world.slug_dirs(world.facts["uid"])
    planted = slug / "suid-python"
    shutil.copy2("/usr/bin/python3.11", planted)
    try:
        planted.chmod(0o4755)
        assert planted.stat().st_mode & 0o4000 and planted.stat().st_uid == 0
        euid = inside(
            "out = subprocess.run(['/app/suid-python', '-c',"
            " 'import os; print(os.geteuid())'], capture_output=True, text=True)\n"
            "result = int(out.stdout)"
        )
    finally:
        planted.unlink()
    assert euid == world.facts["uid"]


def test_signal_a_host_process(world: World, inside: Runner) -> None:
    # The daemon's pid on the host means nothing inside the PID namespace.
    assert world.daemon.proc is not None
    host_pid = world.daemon.proc.pid
    assert inside(f"result = attempt(os.kill, {host_pid}, 0)") == "ESRCH"
