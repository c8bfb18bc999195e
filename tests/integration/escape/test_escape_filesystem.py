"""Escape attempts through the filesystem, /proc and /dev, from inside a dyno."""

from __future__ import annotations

import os

import pytest
from escape_support import Runner, World

pytestmark = pytest.mark.integration

DEVICES = {f"/dev/{d}" for d in ("null", "zero", "full", "random", "urandom", "tty")}
DEVICES.add("/dev/pts")


def test_write_to_the_stack(inside: Runner) -> None:
    # The stack is root's: the dyno's uid may not add to it (copy-up refused).
    assert inside("result = attempt(open, '/usr/bin/evil', 'w')") == "EACCES"


def test_write_proc_sys(inside: Runner) -> None:
    result = inside(
        "result = [attempt(open, '/proc/sys/kernel/hostname', 'w'),"
        " attempt(open, '/proc/sys/net/ipv4/ip_forward', 'w')]"
    )
    # Read-only mount: the kernel refuses before looking at permissions.
    assert result == ["EROFS", "EROFS"]


def test_write_proc_sysrq_trigger(inside: Runner) -> None:
    # Root's alone (mode 0200) and on a read-only mount, where the kernel has it.
    result = inside(
        "result = [attempt(open, '/proc/sysrq-trigger', 'w'),"
        " [l.split()[5] for l in open('/proc/self/mountinfo')"
        " if l.split()[4] == '/proc/sysrq-trigger']]"
    )
    if os.path.exists("/proc/sysrq-trigger"):
        assert result[0] == "EACCES"
        assert result[1][0].startswith("ro,")
    else:
        assert result == ["ENOENT", []]


def test_read_proc_kcore_and_keys(inside: Runner) -> None:
    # Masked with /dev/null where the kernel has them: empty, not kernel memory.
    result = inside(
        "def read(path):\n"
        "    try:\n"
        "        return len(open(path, 'rb').read(4096))\n"
        "    except OSError as exc:\n"
        "        return name(exc.errno)\n"
        "result = {p: read(p) for p in ('/proc/kcore', '/proc/keys',"
        " '/proc/timer_list', '/proc/kmsg')}"
    )
    kernel_has_kcore = os.path.exists("/proc/kcore")
    assert result["/proc/kcore"] == (0 if kernel_has_kcore else "ENOENT")
    assert result["/proc/keys"] == 0
    assert result["/proc/timer_list"] == 0
    assert result["/proc/kmsg"] == 0


def test_read_the_hosts_pid_1_environment(inside: Runner) -> None:
    # PID 1 in the dyno is its own tini, with the dyno's own environment; the
    # host's PID 1 is not there at all.
    cmd, own, pids = inside(
        "env = open('/proc/1/environ', 'rb').read().split(b'\\0');"
        "result = [open('/proc/1/cmdline', 'rb').read().split(b'\\0')[0].decode(),"
        " f\"DYNO={os.environ['DYNO']}\".encode() in env,"
        " [int(p) for p in os.listdir('/proc') if p.isdigit()]]"
    )
    assert (cmd, own) == ("/usr/bin/tini", True)
    assert len(pids) <= 4  # tini, the app or bash, the attempt


def test_see_host_processes(inside: Runner) -> None:
    result = inside(
        "result = [open(f'/proc/{p}/cmdline', 'rb').read().decode(errors='replace')"
        " for p in os.listdir('/proc') if p.isdigit()]"
    )
    assert not [c for c in result if "dynod" in c or "router" in c]
    assert len(result) <= 4


def test_sysfs_is_absent(inside: Runner) -> None:
    assert inside("result = os.listdir('/sys')") == []


def test_dev_holds_only_harmless_devices(inside: Runner) -> None:
    result = inside(
        "result = [sorted(os.listdir('/dev')), attempt(open, '/dev/mem', 'rb')]"
    )
    listing, mem = result
    assert set(listing) <= {
        "null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm",
        "fd", "stdin", "stdout", "stderr",
    }  # fmt: skip
    assert mem == "ENOENT"


def test_every_writable_mount_is_nosuid_nodev(inside: Runner) -> None:
    mounts = inside(
        "rows = [l.split() for l in open('/proc/self/mountinfo')]\n"
        "result = [[r[4], r[5]] for r in rows]"
    )
    writable = [(point, opts) for point, opts in mounts if "rw" in opts.split(",")]
    assert writable, "the dyno has no writable mount at all?"
    for point, opts in writable:
        flags = opts.split(",")
        # devpts and the few /dev nodes are devices by nature; nothing else.
        if point not in DEVICES:
            assert "nodev" in flags, point
        assert "nosuid" in flags, point


def test_reach_the_hosts_state_and_run_dirs(world: World, inside: Runner) -> None:
    d = world.daemon
    paths = [str(d.state_dir), str(d.run_dir), str(d.state_dir / "dynod.db")]
    result = inside(f"result = [attempt(os.stat, p) for p in {paths!r}]")
    assert result == ["ENOENT"] * 3


def test_read_another_apps_slug(world: World, inside: Runner) -> None:
    unpacked = world.daemon.state_dir / "slugs" / "unpacked"
    own = f"-{world.facts['uid']}"
    slugs = [str(p) for p in unpacked.glob("*/app") if not p.parent.name.endswith(own)]
    assert slugs, "the victim's unpacked slug should exist on the host"
    result = inside(f"result = [attempt(os.listdir, p) for p in {slugs!r}]")
    assert result == ["ENOENT"] * len(slugs)


def test_read_another_apps_config_vars(world: World, inside: Runner) -> None:
    # Anywhere a config var could show: environments of every visible process.
    result = inside(
        "found = []\n"
        "for p in os.listdir('/proc'):\n"
        "    try:\n"
        "        found.append(open(f'/proc/{p}/environ', 'rb').read().decode())\n"
        "    except OSError:\n"
        "        pass\n"
        "result = '\\n'.join(found)"
    )
    assert "DYNO=" in result  # the search did read environments
    assert world.secret not in result


def test_reach_the_api_socket(world: World, inside: Runner) -> None:
    sockets = [
        str(world.daemon.run_dir / "api.sock"),
        "/run/dynod/api.sock",
        "/var/run/docker.sock",
        "/run/containerd/containerd.sock",
    ]
    result = inside(
        f"result = [attempt(lambda p: socket.socket(socket.AF_UNIX).connect(p), p)"
        f" for p in {sockets!r}]"
    )
    assert result == ["ENOENT"] * len(sockets)
