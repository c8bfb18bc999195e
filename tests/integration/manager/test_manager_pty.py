"""``dynoctl run`` under a real pseudo-terminal, as a user at a terminal runs it.

The test is the terminal: it forks ``dynoctl run -- bash`` on a PTY, types
into the master side and reads what the dyno's shell prints back.  A window
resize (TIOCSWINSZ on the master, which sends SIGWINCH to dynoctl) must reach
the dyno's own terminal, Ctrl-C must interrupt the dyno's foreground command
rather than end dynoctl, and the shell's exit status must be dynoctl's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import struct
import termios
import time
from collections.abc import Iterator

import pytest

from tests.support.daemon import EXAMPLE_APP, VENV_BIN, Daemon

pytestmark = pytest.mark.integration

APP = "terminal"


class Terminal:
    """The master side of a PTY whose slave runs one child process."""

    def __init__(self, pid: int, fd: int) -> None:
        self.pid = pid
        self.fd = fd
        self.seen = b""

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def expect(self, pattern: str, timeout: float = 30) -> re.Match[bytes]:
        """Read until ``pattern`` matches output not matched before."""
        regex = re.compile(pattern.encode())
        deadline = time.monotonic() + timeout
        while True:
            found = regex.search(self.seen)
            if found:
                self.seen = self.seen[found.end() :]
                return found
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                pytest.fail(f"no {pattern!r} within {timeout} s; got {self.seen!r}")
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                data = b""
            if not data:
                pytest.fail(f"terminal closed before {pattern!r}; got {self.seen!r}")
            self.seen += data

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Keep the master drained so the child never blocks on output.
            if select.select([self.fd], [], [], 0.05)[0]:
                with contextlib.suppress(OSError):
                    self.seen += os.read(self.fd, 65536)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
        pytest.fail(f"dynoctl run did not exit within {timeout} s; got {self.seen!r}")


@pytest.fixture
def terminal(dynod: Daemon) -> Iterator[Terminal]:
    dynod.ctl("apps:create", APP)
    dynod.ctl("deploy", "-a", APP, str(EXAMPLE_APP))
    argv = [str(VENV_BIN / "dynoctl"), "run", "-a", APP, "--", "bash", "--norc"]
    env = {**dynod.env, "TERM": "xterm"}
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, env)
    term = Terminal(pid, fd)
    term.resize(24, 80)
    try:
        yield term
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
        dynod.ctl("apps:destroy", APP, "--confirm", APP, check=False)


def test_run_under_a_pty(terminal: Terminal, dynod: Daemon) -> None:
    # Keys typed while the dyno starts are not lost; output comes back.
    terminal.type("echo hi-$((6*7))\r")
    terminal.expect(r"hi-42")
    terminal.expect(r"\$ ")
    terminal.type("test -t 0 -a -t 1 && echo term-$((2*3))\r")
    terminal.expect(r"term-6")
    terminal.type("echo tty-is-$(tty)\r")
    terminal.expect(r"tty-is-/dev/pts/0")

    # A window resize reaches the dyno's terminal.
    terminal.resize(33, 101)
    deadline = time.monotonic() + 10
    while True:
        terminal.type("stty size\r")
        size = terminal.expect(r"[\r\n](\d+ \d+)\r\n").group(1)
        if size == b"33 101" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert size == b"33 101"

    # Ctrl-C interrupts the dyno's foreground command, not dynoctl.
    terminal.type("sleep 60; echo slept\r")
    time.sleep(1.0)
    started = time.monotonic()
    terminal.type("\x03")
    terminal.type("echo after-$((1+1))\r")
    terminal.expect(r"after-2", timeout=10)
    assert time.monotonic() - started < 10
    assert b"slept" not in terminal.seen

    # The shell's exit status is dynoctl's.
    terminal.type("exit 7\r")
    assert terminal.wait() == 7
    assert not [d for d in dynod.ctl_json("ps", "-a", APP) if d["type"] == "run"]
