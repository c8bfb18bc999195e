"""Live tails end to end: the real ``dynoctl logs -t``, and a client that stalls."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import REPO, VENV_BIN, Daemon, running_daemon

pytestmark = pytest.mark.integration

APP = "tails"
LOG_APP = REPO / "tests" / "fixtures" / "apps" / "log-writer"
L11 = re.compile(
    r"^\S+ dynod\[logs\]: Error L11 \(Tail buffer overflow\) -> This tail session "
    r"dropped (\d+) messages since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$"
)


@pytest.fixture(scope="module")
def daemon(shared_stack_dir: Path) -> Iterator[Daemon]:
    with running_daemon(shared_stack_dir, prefix="dynod-tails-") as d:
        d.ctl("apps:create", APP)
        d.ctl("deploy", "-a", APP, str(LOG_APP))
        d.wait_for(APP, "/log?tag=boot", "ok")
        yield d


class Follower:
    """A running ``dynoctl logs -t``; its stdout is read line by line as it comes."""

    def __init__(self, d: Daemon, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "dynoctl"), "logs", "-t", "-a", APP, *args],
            env=d.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 20) -> int:
        """The index of the first line holding ``text``, once it has come."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for i, line in enumerate(self.lines):
                    if text in line:
                        return i
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    pytest.fail(f"the follower never printed {text!r}: {self.lines}")
                self._changed.wait(left)

    def stop(self) -> tuple[int, str]:
        """Ctrl-C, as a user ends a tail; the exit status and stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        stderr = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode, stderr


def test_logs_follow_prints_live_lines_and_filters_them(daemon: Daemon) -> None:
    everything = Follower(daemon, "-n", "1")
    web_only = Follower(daemon, "-n", "1", "-s", "app", "-p", "web")
    router_only = Follower(daemon, "-n", "1", "-s", "dynod", "-d", "router")
    followers = (everything, web_only, router_only)
    try:
        # Each has printed its line of history: it is subscribed.
        for f in followers:
            f.wait_for(" ")
        ready = {id(f): len(f.lines) for f in followers}

        daemon.get(APP, "/log?tag=live&n=3")
        daemon.ctl("run:detached", "-a", APP, "--", "python3", "-c", "print('oneoff')")
        everything.wait_for("]: oneoff")
        daemon.get(APP, "/log?tag=last&n=1")
        everything.wait_for('path="/log?tag=last')
        web_only.wait_for("]: last 0")
        router_only.wait_for('path="/log?tag=last')

        live = {id(f): f.lines[ready[id(f)] :] for f in followers}
        got = live[id(everything)]
        assert [x.split(" ", 1)[1] for x in got if " app[web." in x] == [
            "app[web.1]: live 0",
            "app[web.1]: live 1",
            "app[web.1]: live 2",
            "app[web.1]: last 0",
        ]
        assert any(re.search(r" app\[run\.\d+\]: oneoff$", x) for x in got)
        assert any(" dynod[router]: " in x and "tag=live" in x for x in got)
        # The filters hold for live lines as they do for history.
        assert [x.split(" ", 1)[1] for x in live[id(web_only)]] == [
            "app[web.1]: live 0",
            "app[web.1]: live 1",
            "app[web.1]: live 2",
            "app[web.1]: last 0",
        ]
        routed = live[id(router_only)]
        assert routed and all(" dynod[router]: " in x for x in routed)
        assert any("tag=live" in x for x in routed)
    finally:
        results = [f.stop() for f in followers]
    # Ctrl-C ends a tail as a success, with nothing on stderr.
    assert results == [(0, "")] * 3


def _connect_tail(d: Daemon, query: str) -> tuple[socket.socket, bytes]:
    """A raw HTTP/1.0 log-stream request; returns once history has begun to come."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    sock.connect(str(d.run_dir / "api.sock"))
    sock.sendall(
        f"GET /apps/{APP}/log-stream?{query} HTTP/1.0\r\nHost: dynod\r\n\r\n".encode()
    )
    got = b""
    # The history is read after the tail subscribed: a line of it means the
    # live part is on.
    while b"\r\n\r\n" not in got or not got.split(b"\r\n\r\n", 1)[1].count(b"\n"):
        chunk = sock.recv(65536)
        assert chunk, got
        got += chunk
    head, body = got.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.0 200"), head
    return sock, body


def test_logs_slow_tail_client_is_told_exactly_what_it_missed(daemon: Daemon) -> None:
    tag = "slowtail-" + "x" * 200
    flood = 15000
    sock, body = _connect_tail(daemon, "tail=true&lines=1&type=web")
    try:
        # The client stops reading; the web dyno logs far more than the
        # tail's queue and the socket hold.
        daemon.get(APP, f"/log?tag={tag}&n={flood}")
        daemon.wait_log(APP, f"{tag} {flood - 1}", "-p", "web")

        # Meanwhile the API answers and other dynos' lines go through.
        started = time.monotonic()
        daemon.ctl("ps", "-a", APP)
        assert time.monotonic() - started < 3
        daemon.ctl("run:detached", "-a", APP, "--", "python3", "-c", "print('other')")
        daemon.wait_log(APP, "]: other", "-p", "run")

        # Now it reads: the lines it got, with a notice where some went
        # missing; once the queue had room again, later lines may follow.
        lines: list[str] = []
        last = f"]: {tag} {flood - 1}"
        while not (lines and lines[-1].endswith(last)):
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                # Nothing more comes once the newest lines were all missed.
                assert lines and L11.match(lines[-1]), lines[-3:]
                break
            assert chunk, lines[-3:]
            body += chunk
            *whole, rest = body.split(b"\n")
            lines += [x.decode() for x in whole]
            body = rest
            if any(L11.match(x) for x in lines[-len(whole) :]):
                sock.settimeout(2)
        sock.settimeout(20)
        numbers = [int(x.rsplit(" ", 1)[1]) for x in lines if f"]: {tag} " in x]
        missed = sum(int(m.group(1)) for x in lines if (m := L11.match(x)))
        # Lines came in order, none twice, and every one not sent was counted.
        assert numbers == sorted(set(numbers))
        assert missed > 0 and len(numbers) + missed == flood
        own = daemon.logs(APP, "-n", "1500", "-s", "dynod", "-p", "web")
        assert not any("Error L12" in x for x in own)

        # The tail carries on after the notice.
        daemon.get(APP, "/log?tag=caught-up&n=1")
        while "caught-up 0" not in body.decode():
            chunk = sock.recv(65536)
            assert chunk
            body += chunk
    finally:
        sock.close()


def test_a_live_tail_ends_when_dynod_stops_and_holds_up_nothing(
    daemon: Daemon,
) -> None:
    follower = Follower(daemon, "-n", "1")
    try:
        follower.wait_for(" ")
        began = time.monotonic()
        daemon.stop()
        stopped = time.monotonic() - began
        follower.proc.wait(10)
    finally:
        follower.stop()
        daemon.start()
    assert stopped < 5, f"dynod took {stopped:.1f} s to stop with a tail open"
