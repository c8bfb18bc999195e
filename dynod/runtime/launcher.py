"""Launch one dyno from the spawner: two forks, no exec of a Python.

The spawner calls :func:`launch` in its own (single-threaded) process::

    spawner ── fork ──▶ A  joins the dyno's v1 cgroups, unshares NS UTS IPC PID
                        │  NET, forks B into its cgroup2 cgroup, creates the
                        │  veth (host end on the bridge, peer "eth0" in the new
                        │  netns), tells B "go", reports B's pid and exits
                        └─ fork ──▶ B = PID 1 of the dyno: builds the root
                                    (:mod:`dynod.runtime.rootfs`), waits for
                                    "go", unshares CGROUP, configures lo and
                                    eth0, pivots, sets the hostname, drops to
                                    the dyno's uid, capabilities and seccomp
                                    (:mod:`dynod.runtime.privileges`) and
                                    execs tini

A exits at once, so B is reparented to the spawner (a child subreaper), which
reaps it and reports its status.  B is in every cgroup before it makes its
cgroup namespace, so ``/proc/self/cgroup`` inside shows ``/``; no pid is ever
written to ``cgroup.procs`` (see :func:`_fork_b` for why).  A opens its
netlink socket before unsharing the network namespace, so the socket keeps
talking to the host's namespace while the peer lands in the dyno's; B builds
its root while A does the network.

Each step leaves a timestamp (``time.monotonic()``, comparable across the
processes) so the start can be broken down by phase.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import json
import os
import signal
import socket
import termios
import time
from dataclasses import dataclass

from dynod.errors import RuntimeFailure
from dynod.runtime import privileges
from dynod.runtime import syscalls as sc
from dynod.runtime.netlink import Netlink
from dynod.runtime.plan import LaunchPlan
from dynod.runtime.rootfs import build_root, enter_root

INIT = "/usr/bin/tini"
# Sources the slug's profile scripts, then replaces bash with the command.
PROFILE_SCRIPT = (
    'for f in /app/.profile.d/*.sh; do [ -r "$f" ] && . "$f"; done; unset f; '
    '[ -r /app/.profile ] && . /app/.profile; exec "$@"'
)
_NAMESPACES = (
    sc.CLONE_NEWNS
    | sc.CLONE_NEWUTS
    | sc.CLONE_NEWIPC
    | sc.CLONE_NEWPID
    | sc.CLONE_NEWNET
)


@dataclass(frozen=True)
class Stdio:
    """The descriptors that become the dyno's 0, 1 and 2.

    With ``tty`` set, all three are one end of a socketpair: the dyno makes
    its terminal in its own devpts, keeps the slave as 0, 1 and 2 and sends
    the master back over that socket (see :func:`_set_stdio`).
    """

    stdin: int | None
    stdout: int
    stderr: int
    tty: bool = False


@dataclass(frozen=True)
class Launched:
    pid: int
    # Phase name -> time.monotonic() when it ended, from all three processes.
    marks: dict[str, float]


def command(plan: LaunchPlan) -> list[str]:
    """The argv B execs: tini, then (except for builds) the profile wrapper."""
    if plan.build:
        return [INIT, "--", *plan.argv]
    return [INIT, "--", "/bin/bash", "-c", PROFILE_SCRIPT, "--", *plan.argv]


def launch(plan: LaunchPlan, stdio: Stdio, scratch: str) -> Launched:
    """Start the dyno; return once its command has been exec'd.

    Raises :class:`RuntimeFailure` when any step fails; nothing of the dyno is
    left running then (its cgroups, made by the agent, are the agent's to remove).
    """
    marks = {"launch": time.monotonic()}
    report_r, report_w = os.pipe()
    exec_r, exec_w = os.pipe()
    go_r, go_w = os.pipe()
    pid_a = os.fork()
    if pid_a == 0:
        _child_a(plan, stdio, scratch, report_w, exec_w, go_r, go_w)
    for fd in (report_w, exec_w, go_r, go_w):
        os.close(fd)

    # A reports B's pid (or what failed) and exits.
    report = _read_all(report_r)
    os.waitpid(pid_a, 0)
    a_marks, pid_b, error = _parse(report)
    marks.update(a_marks)
    if pid_b is None:
        os.close(exec_r)
        raise RuntimeFailure(
            f"Dyno {plan.name} ({plan.dyno_id}) failed to start: {error}"
        )

    # B's status pipe closes on exec; anything it wrote first is its report.
    b_marks, _, error = _parse(_read_all(exec_r))
    marks.update(b_marks)
    marks["exec"] = time.monotonic()
    if error is not None:
        os.waitpid(pid_b, 0)
        raise RuntimeFailure(
            f"Dyno {plan.name} ({plan.dyno_id}) failed to start: {error}"
        )
    return Launched(pid_b, marks)


def _child_a(
    plan: LaunchPlan,
    stdio: Stdio,
    scratch: str,
    report: int,
    status: int,
    go_r: int,
    go_w: int,
) -> None:
    """Process A; never returns."""
    marks: dict[str, float] = {"a_forked": time.monotonic()}
    pid_b = 0
    try:
        # Join the v1 cgroups first (B inherits them), through "tasks" and as
        # "0" (this thread): the one way in that takes no global write lock.
        v1, v2 = _split_cgroup_dirs(plan.cgroup_dirs)
        for directory in v1:
            with open(os.path.join(directory, "tasks"), "w") as f:
                f.write("0")
        marks["a_cgroups"] = time.monotonic()

        # Opened in the host netns; it stays bound there after unshare.
        host = Netlink() if plan.veth else None
        master = socket.if_nametoindex(plan.bridge) if plan.bridge else 0
        sc.unshare(_NAMESPACES)
        marks["a_unshare"] = time.monotonic()

        # B is born in its cgroup2 cgroup, if there is one.
        pid_b = _fork_b(v2)
        if pid_b == 0:
            os.close(go_w)
            os.close(report)
            _child_b(plan, stdio, scratch, status, go_r)
        os.close(go_r)
        marks["a_fork_b"] = time.monotonic()

        # The veth: host end up on the bridge, peer named eth0 in B's netns.
        if host is not None and plan.veth:
            netns = os.open("/proc/self/ns/net", os.O_RDONLY)
            host.add_veth(plan.veth, master, "eth0", netns)
            os.close(netns)
            marks["a_veth"] = time.monotonic()
        os.write(go_w, b"g")
        os.write(report, json.dumps({"pid": pid_b, "marks": marks}).encode())
        os._exit(0)
    except BaseException as exc:
        if pid_b:
            os.kill(pid_b, signal.SIGKILL)
            os.waitpid(pid_b, 0)
        os.write(report, json.dumps({"error": str(exc), "marks": marks}).encode())
        os._exit(1)


def _child_b(
    plan: LaunchPlan, stdio: Stdio, scratch: str, status: int, go: int
) -> None:
    """Process B, the dyno's PID 1; never returns (it execs or exits 127)."""
    marks: dict[str, float] = {"b_forked": time.monotonic()}
    try:
        # The spawner's signal set-up must not leak into the dyno.
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGPIPE, signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())

        root = build_root(plan, scratch)
        marks["b_root"] = time.monotonic()

        # Wait for A's veth (and, on old kernels, cgroup2 join).  Only in every
        # cgroup may B make its cgroup namespace, or /proc/self/cgroup would
        # show paths above its root.
        if os.read(go, 1) != b"g":
            raise RuntimeFailure("The dyno's cgroups or network were not set up.")
        marks["b_go"] = time.monotonic()
        sc.unshare(sc.CLONE_NEWCGROUP)
        _configure_network(plan)
        marks["b_net"] = time.monotonic()

        enter_root(root)
        sc.sethostname(plan.name)
        _set_stdio(stdio, plan.uid, plan.gid)
        marks["b_pivot"] = time.monotonic()

        # Drop to the dyno's user for good: no capabilities, no_new_privs,
        # seccomp (see privileges.py for the order).
        privileges.drop(plan)
        os.chdir("/app")
        marks["b_creds"] = time.monotonic()
        os.write(status, json.dumps({"marks": marks}).encode() + b"\n")
        argv = command(plan)
        os.execve(argv[0], argv, plan.env)
    except BaseException as exc:
        message = json.dumps({"error": str(exc), "marks": marks})
        os.write(status, message.encode() + b"\n")
    os._exit(127)


def _split_cgroup_dirs(dirs: list[str]) -> tuple[list[str], str | None]:
    """The v1 directories, and the one cgroup2 directory if any."""
    v1 = [d for d in dirs if not os.path.exists(os.path.join(d, "cgroup.controllers"))]
    v2 = [d for d in dirs if d not in v1]
    return v1, v2[0] if v2 else None


def _fork_b(cgroup2_dir: str | None) -> int:
    """Fork B into ``cgroup2_dir``.

    Writing a pid to cgroup.procs takes the global threadgroup lock and waits
    for an RCU grace period (10-25 ms on this class of host, the slowest step
    of a start); clone3(CLONE_INTO_CGROUP) does not.  Kernels without clone3
    get the slow way.
    """
    if cgroup2_dir is None:
        return os.fork()
    fd = os.open(cgroup2_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return sc.fork_into_cgroup(fd)
    except OSError as exc:
        if exc.errno not in (errno.ENOSYS, errno.E2BIG):
            raise
    finally:
        os.close(fd)
    pid = os.fork()
    if pid:
        with open(os.path.join(cgroup2_dir, "cgroup.procs"), "w") as f:
            f.write(str(pid))
    return pid


def _configure_network(plan: LaunchPlan) -> None:
    """Bring up lo, and eth0 with its address and default route, if any."""
    nl = Netlink()
    try:
        nl.set_up(socket.if_nametoindex("lo"))
        if plan.address and plan.gateway:
            eth0 = socket.if_nametoindex("eth0")
            nl.add_address(eth0, ipaddress.IPv4Interface(plan.address))
            nl.set_up(eth0)
            nl.add_default_route(ipaddress.IPv4Address(plan.gateway))
    finally:
        nl.close()


def _set_stdio(stdio: Stdio, uid: int, gid: int) -> None:
    """Install the dyno's 0, 1, 2 in a session of its own."""
    if stdio.tty:
        _open_terminal(stdio.stdout, uid, gid)
        return
    stdin = stdio.stdin
    if stdin is None:
        stdin = os.open("/dev/null", os.O_RDONLY)
    os.dup2(stdin, 0)
    os.dup2(stdio.stdout, 1)
    os.dup2(stdio.stderr, 2)
    if stdio.stdin is None:
        _hold_log_pipes()
    os.setsid()


def _hold_log_pipes() -> None:
    """Reopen stdout and stderr read-write, so the dyno is a reader of its own
    log pipes.

    A pipe whose last reader closes makes every write fail with EPIPE (and
    SIGPIPE).  The spawner keeps a read end while dynod is down, but if the
    spawner dies too, a dyno that logs a line before the next daemon adopts
    it would die of it.  As its own reader it cannot: its lines wait in the
    pipe (and a full pipe blocks the writer) until the next daemon reads them
    through /proc.
    """
    for fd in (1, 2):
        both = os.open(f"/proc/self/fd/{fd}", os.O_RDWR)
        os.dup2(both, fd)
        os.close(both)


def _open_terminal(channel: int, uid: int, gid: int) -> None:
    """Make the dyno's controlling terminal and send its master down ``channel``.

    The pair comes from the dyno's own devpts (the root is already pivoted),
    so ``tty`` and ttyname(3) find the slave at /dev/pts/0 inside; a terminal
    from the host's devpts would have no name there.  The slave belongs to
    the dyno's user, as login(1) would leave it.
    """
    master, slave = os.openpty()
    os.fchown(slave, uid, gid)
    with socket.socket(fileno=channel) as sock:
        socket.send_fds(sock, [b"m"], [master])
    os.close(master)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(slave)
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def _parse(raw: bytes) -> tuple[dict[str, float], int | None, str | None]:
    """Marks, pid and error from the JSON lines a launcher process wrote."""
    marks: dict[str, float] = {}
    pid: int | None = None
    error: str | None = None
    for line in raw.splitlines():
        data = json.loads(line)
        marks.update(data.get("marks", {}))
        pid = data.get("pid", pid)
        error = data.get("error", error)
    if pid is None and error is None and not raw:
        error = "the launcher exited without a report"
    return marks, pid, error
