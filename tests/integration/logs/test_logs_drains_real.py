"""Logs end to end: a real dynod, real dynos, rsyslog and an HTTPS receiver."""

from __future__ import annotations

import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.logs.logs_receivers import (
    Certs,
    HttpsReceiver,
    Rsyslog,
    basic,
    make_certs,
    octet_frames,
)
from tests.support.daemon import REPO, Daemon, running_daemon

pytestmark = pytest.mark.integration

APP = "logs"
LOG_APP = REPO / "tests" / "fixtures" / "apps" / "log-writer"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
TOKEN = re.compile(r"^d\.[0-9a-f-]{36}$")
RATE = 20000


@pytest.fixture(scope="module")
def certs() -> Iterator[tuple[Certs, Certs]]:
    directory = Path(tempfile.mkdtemp(prefix="dynod-logs-certs-"))
    try:
        yield make_certs(directory, "good"), make_certs(directory, "other")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon(shared_stack_dir: Path, certs: tuple[Certs, Certs]) -> Iterator[Daemon]:
    """A dynod that trusts the test CA and limits a dyno to RATE lines/s."""
    settings = f'drain_ca_file = "{certs[0].ca}"\nlog_rate_lines = {RATE}\n'
    with running_daemon(shared_stack_dir, settings, prefix="dynod-logs-") as d:
        d.ctl("apps:create", APP)
        d.ctl("deploy", "-a", APP, str(LOG_APP))
        d.wait_for(APP, "/log?tag=boot", "ok")
        yield d


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    receiver = Rsyslog(tmp_path / "rsyslog")
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def _add_drain(d: Daemon, url: str) -> str:
    out = d.ctl("drains:add", "-a", APP, url).stdout
    token = out.strip().rsplit("(", 1)[1].rstrip(")")
    assert TOKEN.match(token), out
    return token


def test_logs_app_router_and_platform_lines_share_one_stream(daemon: Daemon) -> None:
    daemon.get(APP, "/log?tag=stream&n=3")
    daemon.wait_log(APP, "app[web.1]: stream 2")
    lines = daemon.logs(APP, "-n", "1500")
    assert any("dynod[router]:" in x and 'path="/log' in x for x in lines)
    assert any("dynod[api]: Release v1 created by" in x for x in lines)
    assert [x.split(" ", 1)[1] for x in lines if ": stream " in x] == [
        f"app[web.1]: stream {i}" for i in range(3)
    ]
    only_app = daemon.logs(APP, "-n", "1500", "-s", "app")
    assert only_app and all(" app[" in x for x in only_app)


def test_logs_syslog_drain_reaches_rsyslog_parsed(
    daemon: Daemon, rsyslog: Rsyslog
) -> None:
    url = f"syslog://127.0.0.1:{rsyslog.port}"
    token = _add_drain(daemon, url)
    assert url in daemon.ctl("drains", "-a", APP).stdout
    try:
        daemon.get(APP, "/log?tag=sys&n=2")
        daemon.ctl("ps:scale", "-a", APP, "web=1")

        app_line = rsyslog.wait_for("sys 1")
        assert app_line["pri"] == "190"
        assert (app_line["hostname"], app_line["app"]) == (token, "app")
        assert app_line["procid"] == "web.1"
        assert STAMP.match(app_line["timestamp"])
        router = rsyslog.wait_for('path="/log?tag=sys')
        assert (router["pri"], router["app"], router["procid"]) == (
            "158",
            "dynod",
            "router",
        )
        platform = rsyslog.wait_for("Scaled to web@1")
        assert (platform["pri"], platform["app"], platform["procid"]) == (
            "45",
            "dynod",
            "api",
        )
        assert all(m["hostname"] == token for m in rsyslog.messages())
        assert all(STAMP.match(m["timestamp"]) for m in (router, platform))
    finally:
        daemon.ctl("drains:remove", "-a", APP, url)
    assert url not in daemon.ctl("drains", "-a", APP).stdout


def test_logs_tls_syslog_drain_verifies_the_certificate(
    daemon: Daemon, tmp_path: Path, certs: tuple[Certs, Certs]
) -> None:
    good, other = certs
    trusted = Rsyslog(tmp_path / "good", good)
    untrusted = Rsyslog(tmp_path / "bad", other)
    trusted.start()
    untrusted.start()
    good_url = f"syslog+tls://127.0.0.1:{trusted.port}"
    bad_url = f"syslog+tls://127.0.0.1:{untrusted.port}"
    try:
        token = _add_drain(daemon, good_url)
        _add_drain(daemon, bad_url)
        daemon.get(APP, "/log?tag=tls&n=1")
        got = trusted.wait_for("tls 0")
        assert (got["pri"], got["hostname"], got["procid"]) == ("190", token, "web.1")
        line = daemon.wait_log(APP, "Error L14", "-s", "dynod", "-d", "logs")
        assert line.endswith(
            f'dynod[logs]: Error L14 (certificate validation): error="{_reason(line)}"'
            f' uri="{bad_url}"'
        )
        assert untrusted.messages() == []
    finally:
        daemon.ctl("drains:remove", "-a", APP, good_url, check=False)
        daemon.ctl("drains:remove", "-a", APP, bad_url, check=False)
        trusted.stop()
        untrusted.stop()


def _reason(line: str) -> str:
    m = re.search(r'error="([^"]+)"', line)
    assert m, line
    return m.group(1)


def test_logs_https_drain_frames_headers_and_retry(
    daemon: Daemon, certs: tuple[Certs, Certs]
) -> None:
    receiver = HttpsReceiver(certs[0], statuses=[503])
    url = f"https://user:s3cret@127.0.0.1:{receiver.port}/logs"
    try:
        token = _add_drain(daemon, url)
        daemon.get(APP, "/log?tag=https&n=5")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
            p.status == 200 and b"https 4" in p.body for p in receiver.posts
        ):
            time.sleep(0.1)
        first, retry = receiver.posts[0], receiver.posts[1]
        assert first.status == 503
        # The retried batch is the same frame: same id, same bytes.
        assert retry.headers["Logplex-Frame-Id"] == first.headers["Logplex-Frame-Id"]
        assert retry.body == first.body
        for post in receiver.posts:
            frames = octet_frames(post.body)
            assert post.headers["Content-Type"] == "application/logplex-1"
            assert post.headers["Logplex-Msg-Count"] == str(len(frames))
            assert post.headers["Logplex-Drain-Token"] == token
            assert post.headers["Authorization"] == basic("user", "s3cret")
        frames = [f for p in receiver.posts[1:] for f in octet_frames(p.body)]
        app_frames = [f.decode() for f in frames if b" app web.1 - https " in f]
        assert [f.rsplit(" ", 1)[1] for f in app_frames] == ["0", "1", "2", "3", "4"]
        m = re.match(r"^<190>1 (\S+) (\S+) app web\.1 - https 0$", app_frames[0])
        assert m and STAMP.match(m.group(1)) and m.group(2) == token
    finally:
        daemon.ctl("drains:remove", "-a", APP, url, check=False)
        receiver.close()


def test_logs_drains_are_limited_to_five(daemon: Daemon) -> None:
    urls = [f"syslog://127.0.0.1:{9 + i}" for i in range(6)]
    try:
        for url in urls[:5]:
            _add_drain(daemon, url)
        refused = daemon.ctl("drains:add", "-a", APP, urls[5], check=False)
        assert refused.returncode == 1 and "5 drains" in refused.stderr
        bad = daemon.ctl("drains:add", "-a", APP, "ftp://x:1", check=False)
        assert bad.returncode == 1 and "unknown scheme" in bad.stderr
    finally:
        for url in urls:
            daemon.ctl("drains:remove", "-a", APP, url, check=False)
    assert daemon.ctl_json("drains", "-a", APP) == []


def test_logs_flood_is_rate_limited_and_dynod_stays_responsive(
    daemon: Daemon,
) -> None:
    daemon.ctl("run:detached", "-a", APP, "--", "python3", "flood.py", "3", "flood")
    # While the one-off floods, the API and another dyno's lines go through.
    time.sleep(1)
    started = time.monotonic()
    daemon.ctl("ps", "-a", APP)
    assert time.monotonic() - started < 3
    daemon.get(APP, "/log?tag=calm&n=1")
    daemon.wait_log(APP, "app[web.1]: calm 0", "-d", "web.1")
    notice = daemon.wait_log(APP, "Error L12 (Log rate limit)", "-s", "dynod")
    assert re.search(
        r"dynod\[run\.\d+\]: Error L12 \(Log rate limit\): \d+ lines", notice
    )
    assert f"may write {RATE} lines per second" in notice
    # What passed is at most the burst plus the rate over the flood, give or
    # take one read batch.
    done = daemon.wait_log(APP, "flood done", "-p", "run", timeout=30)
    written = int(done.rsplit(" ", 1)[1])
    app_id = daemon.ctl_json("apps:info", "-a", APP)["id"]
    history = b"".join(
        p.read_bytes() for p in (daemon.state_dir / "logs" / app_id).glob("*.log")
    )
    kept = len(re.findall(rb"\]: flood \d+ x", history))
    assert written > 4 * RATE
    assert 0 < kept <= RATE * 5 + 20000


class StalledReceiver:
    """A syslog receiver on loopback that accepts a drain and then reads nothing.

    Its receive buffer is made small, so what the kernel holds for it is too;
    :meth:`drain` starts reading and returns every frame that ever arrived.
    """

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.server.settimeout(20)
        self.port = self.server.getsockname()[1]
        self.conn: socket.socket | None = None
        self.data = b""

    def accept(self) -> None:
        self.conn, _ = self.server.accept()

    def drain(self, quiet: float) -> list[bytes]:
        """Read until nothing has come for ``quiet`` seconds; all frames so far."""
        assert self.conn is not None
        self.conn.settimeout(quiet)
        while True:
            try:
                chunk = self.conn.recv(1 << 20)
            except TimeoutError:
                break
            assert chunk, "the drain hung up"
            self.data += chunk
        return octet_frames(self.data)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


def _as_history_line(frame: bytes) -> str:
    """The history line a drain's RFC 5424 frame was made from."""
    _, stamp, _, source, dyno, _, _, message = frame.split(b" ", 7)
    return f"{stamp.decode()} {source.decode()}[{dyno.decode()}]: {message.decode()}"


def _history(d: Daemon) -> list[str]:
    app_id = d.ctl_json("apps:info", "-a", APP)["id"]
    segments = sorted((d.state_dir / "logs" / app_id).glob("*.log"))
    return b"".join(p.read_bytes() for p in segments).decode().splitlines()


def test_logs_stalled_drain_overflows_and_slows_no_other_drain(
    daemon: Daemon, rsyslog: Rsyslog
) -> None:
    stalled = StalledReceiver()
    stalled_url = f"syslog://127.0.0.1:{stalled.port}"
    good_url = f"syslog://127.0.0.1:{rsyslog.port}"
    # 15 MB in lines of about 1 KB: many times the drain's 1 MiB buffer and
    # the socket buffers, well within the rate limit, and in bursts of half
    # the buffer, which a receiver that reads keeps up with.
    tag = "stall-" + "s" * 1000
    try:
        _add_drain(daemon, good_url)
        _add_drain(daemon, stalled_url)
        daemon.get(APP, "/log?tag=stall-start&n=1")
        stalled.accept()
        for i in range(30):
            daemon.get(APP, f"/log?tag={tag}-{i}&n=500")
            time.sleep(0.1)

        # The stalled drain drops and says so; the other one gets every line.
        l10 = daemon.wait_log(APP, "Error L10", "-s", "dynod", "-d", "logs")
        assert re.search(
            r" dynod\[logs\]: Error L10 \(output buffer overflow\): \d+ messages "
            r"dropped since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00\.$",
            l10,
        )
        rsyslog.wait_for(f"{tag}-29 499", timeout=30)
        flood = [m for m in rsyslog.messages() if m["msg"].startswith(tag)]
        assert len({m["msg"] for m in flood}) == 15000
        started = time.monotonic()
        daemon.ctl("ps", "-a", APP)
        assert time.monotonic() - started < 3

        # The receiver reads at last.  Every line of the history from its
        # first one on either reached it, in order, or is counted in an L10.
        frames = stalled.drain(quiet=2)
        got = [_as_history_line(f) for f in frames]
        history = _history(daemon)
        window = history[history.index(got[0]) :]
        assert got[-1] == window[-1]
        kept = iter(window)
        assert all(line in kept for line in got), "lines out of order or twice"
        dropped = [
            int(m.group(1))
            for m in map(re.compile(r"Error L10 .*: (\d+) messages").search, window)
            if m
        ]
        assert sum(dropped) == len(window) - len(got) > 5000
    finally:
        daemon.ctl("drains:remove", "-a", APP, stalled_url, check=False)
        daemon.ctl("drains:remove", "-a", APP, good_url, check=False)
        stalled.close()


def test_logs_history_and_drain_cursor_survive_a_restart(
    daemon: Daemon, tmp_path: Path
) -> None:
    receiver = Rsyslog(tmp_path / "rs")
    receiver.start()
    url = f"syslog://127.0.0.1:{receiver.port}"
    _add_drain(daemon, url)
    try:
        daemon.get(APP, "/log?tag=before&n=1")
        receiver.wait_for("before 0")
        # The receiver goes away; lines pile up in the history only.
        receiver.stop()
        daemon.get(APP, "/log?tag=away&n=100")
        daemon.wait_log(APP, "away 99")
        daemon.stop()
        daemon.start()
        assert any("away 99" in x for x in daemon.logs(APP, "-n", "1500"))
        # Back up: the drain resumes from its cursor and delivers every line.
        receiver.start()
        receiver.wait_for("away 99", timeout=30)
        got = [m["msg"] for m in receiver.messages() if m["msg"].startswith("away ")]
        assert sorted(set(got), key=lambda m: int(m.split()[1])) == [
            f"away {i}" for i in range(100)
        ]
    finally:
        daemon.ctl("drains:remove", "-a", APP, url, check=False)
        receiver.stop()
