"""Running an escape attempt inside a real dyno and reading back its verdict.

Each attempt is a Python snippet that assigns ``result``; it runs after a
prelude of helpers that turn every failure into the kernel's errno name
("EPERM", "ENOENT", ...) or "timeout" for a connection whose packets were
dropped.  A test then reads as one line of intent and one assertion on the
reason the attempt failed.

An attempt runs one of two ways, as an app's code would: in a one-off dyno of
the attacker app (``dynoctl run``, :meth:`World.inside`), or in the attacker's
web dyno, which runs what it is sent (:meth:`World.in_web`, the
``tests/fixtures/apps/escape-web`` app) through the router like any request.

Network attempts aim only at targets the suite makes (:class:`Targets`):
network namespaces on veths of their own, each with a listener on PORT.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import REPO, VENV_BIN, Daemon

# The attacker app: a web process that runs the attempt it is sent.
ESCAPE_WEB_APP = REPO / "tests" / "fixtures" / "apps" / "escape-web"
MARK = "ESCAPE-RESULT "
PRELUDE = r"""
import ctypes, errno, json, os, platform, socket, struct, subprocess, sys, time
libc = ctypes.CDLL(None, use_errno=True)
NR = {
    "x86_64": dict(
        mount=165, umount2=166, pivot_root=155, chroot=161, init_module=175,
        finit_module=313, delete_module=176, ptrace=101, keyctl=250, add_key=248,
        bpf=321, perf_event_open=298, userfaultfd=323, kexec_load=246,
        kexec_file_load=320, reboot=169, sethostname=170, settimeofday=164,
        clock_settime=227, unshare=272, setns=308, open_by_handle_at=304,
        process_vm_readv=310, io_uring_setup=425, fsopen=430, clone=56, swapon=167,
        syslog=103,
    ),
    "aarch64": dict(
        mount=40, umount2=39, pivot_root=41, chroot=51, init_module=105,
        finit_module=273, delete_module=106, ptrace=117, keyctl=219, add_key=217,
        bpf=280, perf_event_open=241, userfaultfd=282, kexec_load=104,
        kexec_file_load=294, reboot=142, sethostname=161, settimeofday=170,
        clock_settime=112, unshare=97, setns=268, open_by_handle_at=265,
        process_vm_readv=270, io_uring_setup=425, fsopen=430, clone=220, swapon=224,
        syslog=116,
    ),
}[platform.machine()]


def name(code):
    return errno.errorcode.get(code, str(code))


def sys_(call, *args):
    "A raw system call by name: 'ok' or the errno name."
    raw = (bytes, type(None))
    c_args = [a if isinstance(a, raw) else ctypes.c_long(a) for a in args]
    rc = libc.syscall(ctypes.c_long(NR[call]), *c_args)
    return "ok" if rc != -1 else name(ctypes.get_errno())


def attempt(fn, *args):
    try:
        fn(*args)
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return name(exc.errno) if exc.errno else type(exc).__name__
    return "ok"


def connect(host, port, timeout=1.5):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    def go():
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(socket.getaddrinfo(host, port, family)[0][4])
    return attempt(go)


def say(obj):
    print("ESCAPE-RESULT " + json.dumps(obj), flush=True)
"""


def script(snippet: str) -> str:
    return PRELUDE + snippet + "\nsay(result)\n"


# Every network target listens on this port.
PORT = 18081
_LISTENER = """
import socket, sys
s = socket.socket()
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(64)
print("ready", flush=True)
while True:
    s.accept()[0].close()
"""


@dataclass
class Targets:
    """What network attempts aim at, all made by the suite."""

    # A service listening on every host address, as sshd or a database would.
    host_port: int
    # A "local network" host (10.253.X.2, a private address).
    local: str
    # A "metadata" endpoint (169.254.X.254, link-local like the cloud's; the
    # real 169.254.169.254 is left alone so the host's own is never shadowed).
    metadata: str
    # An "outside world" host (198.18.X.2, public by the firewall's rules: in
    # the range RFC 2544 sets aside for tests), which dynos may reach.
    outside: str
    abstract: str


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def add_target(
    name: str, host_cidr: str, ns_cidr: str, procs: list[subprocess.Popen[str]]
) -> None:
    """A netns on a veth of its own, routed from the host, with a listener."""
    _sh("ip", "netns", "add", name)
    _sh("ip", "link", "add", name + "h", "type", "veth", "peer", "eth0", "netns", name)
    _sh("ip", "addr", "add", host_cidr, "dev", name + "h")
    _sh("ip", "link", "set", name + "h", "up")
    gateway = host_cidr.split("/")[0]
    for cmd in (
        ["ip", "addr", "add", ns_cidr, "dev", "eth0"],
        ["ip", "link", "set", "lo", "up"],
        ["ip", "link", "set", "eth0", "up"],
        ["ip", "route", "add", "default", "via", gateway],
    ):
        _sh("ip", "netns", "exec", name, *cmd)
    proc = subprocess.Popen(
        ["ip", "netns", "exec", name, "/usr/bin/python3", "-c", _LISTENER, str(PORT)],
        stdout=subprocess.PIPE,
        text=True,
    )
    procs.append(proc)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"


def remove_target(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], check=False)
    subprocess.run(["ip", "link", "del", name + "h"], check=False, capture_output=True)


# Runs one attempt snippet somewhere inside a dyno; its ``result``.
Runner = Callable[[str], Any]


def parse(stdout: str) -> Any:
    """The result in ``stdout``; build output may indent it."""
    for line in stdout.splitlines():
        if MARK in line:
            return json.loads(line.split(MARK, 1)[1])
    return None


@dataclass
class World:
    """A daemon with a victim app and an attacker app, both deployed."""

    daemon: Daemon
    attacker: str
    victim: str
    secret: str
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def gateway(self) -> str:
        return str(next(IPv4Network(self.daemon.subnet).hosts()))

    def inside(self, snippet: str, *, size: str | None = None) -> Any:
        """Run ``snippet`` in a one-off attacker dyno; its ``result``."""
        sized = ["-s", size] if size else []
        done = self.daemon.ctl(
            "run",
            "-a",
            self.attacker,
            "--no-tty",
            *sized,
            "--",
            "python3",
            "-c",
            script(snippet),
            check=False,
            timeout=120,
        )
        result = parse(done.stdout)
        if result is None:
            pytest.fail(
                f"the attempt reported nothing (exit {done.returncode})\n"
                f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
            )
        return result

    def in_web(self, snippet: str) -> Any:
        """Run ``snippet`` in the attacker's web dyno; its ``result``.

        Sent through the router as a request's body, so it is the web
        process (not a one-off) that runs it.
        """
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.daemon.http_port}/attempt",
            data=script(snippet).encode(),
            headers={"Host": f"{self.attacker}.localhost"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                verdict = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            pytest.fail(f"the web dyno answered {exc.code}: {exc.read().decode()}")
        result = parse(verdict["stdout"])
        if result is None:
            pytest.fail(
                f"the attempt reported nothing (exit {verdict['returncode']})\n"
                f"stdout:\n{verdict['stdout']}\nstderr:\n{verdict['stderr']}"
            )
        return result

    def start_inside(
        self, snippet: str, *, size: str | None = None
    ) -> subprocess.Popen[str]:
        """Start ``snippet`` in a one-off dyno without waiting for it."""
        sized = ["-s", size] if size else []
        return subprocess.Popen(
            [
                str(VENV_BIN / "dynoctl"),
                "run",
                "-a",
                self.attacker,
                "--no-tty",
                *sized,
                "--",
                "python3",
                "-c",
                PRELUDE + snippet,
            ],
            env=self.daemon.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def routes(self) -> dict[str, Any]:
        table: dict[str, Any] = json.loads(
            (self.daemon.run_dir / "routes.json").read_text()
        )
        return table

    def web_dyno(self, app: str) -> tuple[str, int]:
        (dyno, *_) = self.routes()["apps"][app]["dynos"]
        return dyno["addr"], int(dyno["port"])

    def slug_dirs(self, uid: int) -> list[Path]:
        unpacked = self.daemon.state_dir / "slugs" / "unpacked"
        return sorted(p / "app" for p in unpacked.glob(f"*-{uid}"))


def read_result(proc: subprocess.Popen[str]) -> Any:
    """The first result line a background attempt prints."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    pytest.fail(f"the attempt reported nothing (exit {proc.returncode}): {stderr}")
