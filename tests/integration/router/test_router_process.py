"""The router as a process: table swaps, log datagrams, workers, SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable

import pytest
from router_harness import Backend, Router, app, backends, echo, read_logs, router

pytestmark = pytest.mark.integration
__all__ = ["backends", "router"]

_FIELD_RE = re.compile(r'(\w+)=("[^"]*"|\S*)')


def test_a_new_table_is_served_within_100_ms(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    old, new = backends("old"), backends("new")
    router.write_routes({"w": app(["w.localhost"], dynos=[old.dyno("web.1")])})
    router.start()
    assert echo(router.get("w.localhost")[2])["backend"] == "old"

    # Every worker must have switched: poll with fresh connections until ten
    # answers in a row come from the new dyno, and see when that run began.
    router.write_routes({"w": app(["w.localhost"], dynos=[new.dyno("web.1")])})
    swapped = time.monotonic()
    streak, streak_began = 0, 0.0
    while streak < 10:
        asked = time.monotonic()
        if echo(router.get("w.localhost")[2])["backend"] == "new":
            streak_began = streak_began if streak else asked
            streak += 1
        else:
            streak = 0
        assert asked - swapped < 2
    assert streak_began - swapped < 0.1


def test_broken_tables_and_bad_entries_are_ignored(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    be = backends("be")
    good = {"g": app(["g.localhost"], dynos=[be.dyno("web.1")])}
    router.write_routes(good)
    router.start()

    # A file that is not a table leaves the last good table in place.
    router.write_routes({}, raw=b'{"version": 3, "apps": {"g": ')
    time.sleep(0.2)
    assert router.get("g.localhost")[0] == 200

    # A bad app entry drops that app only.
    router.set_routes(
        {
            "bad": app(["bad.localhost"], dynos=[{"name": "web.1", "addr": "nowhere"}]),
            "g2": app(["g2.localhost"], dynos=[be.dyno("web.1")]),
        }
    )
    assert router.get("g2.localhost")[0] == 200
    assert router.get("bad.localhost")[0] == 404
    assert router.get("g.localhost")[0] == 404


def test_one_log_datagram_per_request(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    be = backends("be")
    router.write_routes({"lg": app(["lg.localhost"], dynos=[be.dyno("web.1")])})
    logs = router.log_socket()
    router.start()

    statuses = [
        router.get(
            "lg.localhost", f"/echo?i={i}", headers={"X-Forwarded-For": "198.51.100.7"}
        )
        for i in range(3)
    ]
    router.get("unknown.localhost")
    lines = read_logs(logs, 5, wait=0.5)
    assert len(lines) == 3
    for i, ((app_name, line), (_, headers, body)) in enumerate(
        zip(lines, statuses, strict=True)
    ):
        assert app_name == "lg"
        f = {k: v.strip('"') for k, v in _FIELD_RE.findall(line)}
        assert list(f) == [
            "at", "method", "path", "host", "request_id", "fwd", "dyno",
            "connect", "service", "status", "bytes", "protocol",
        ]  # fmt: skip
        assert f["at"] == "info"
        assert f["method"] == "GET"
        assert f["path"] == f"/echo?i={i}" or f["path"].startswith("/echo?i=")
        assert f["host"] == "lg.localhost"
        assert f["request_id"] == headers["X-Request-Id"]
        assert f["fwd"] == "198.51.100.7, 127.0.0.1"
        assert f["dyno"] == "web.1"
        assert re.fullmatch(r"\d+ms", f["connect"]) and re.fullmatch(
            r"\d+ms", f["service"]
        )
        assert f["status"] == "200"
        assert f["bytes"] == str(len(body))
        assert f["protocol"] == "http"


def test_serves_when_nobody_listens_for_logs(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    be = backends("be")
    router.write_routes({"n": app(["n.localhost"], dynos=[be.dyno("web.1")])})
    router.start()
    assert not (router.run_dir / "logs.sock").exists()
    for _ in range(5):
        assert router.get("n.localhost")[0] == 200

    # A socket that was bound and then abandoned (dynod gone) is no different.
    router.log_socket().close()
    for _ in range(5):
        assert router.get("n.localhost")[0] == 200


def _workers(router: Router) -> list[int]:
    assert router.proc is not None
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(router.proc.pid)],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    return [int(p) for p in out.split()]


def test_a_dead_worker_is_replaced(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    be = backends("be")
    router.write_routes({"d": app(["d.localhost"], dynos=[be.dyno("web.1")])})
    router.start(workers=2)
    first = _workers(router)
    assert len(first) == 2

    os.kill(first[0], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while True:
        now = _workers(router)
        if len(now) == 2 and first[0] not in now:
            break
        assert time.monotonic() < deadline, now
        time.sleep(0.05)
    for _ in range(10):
        assert router.get("d.localhost")[0] == 200


def test_sigterm_finishes_requests_in_flight_then_exits(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    be = backends("be")
    router.write_routes({"q": app(["q.localhost"], dynos=[be.dyno("web.1")])})
    router.start(workers=1)
    assert router.proc is not None
    idle = router.connect()
    idle.request("GET", "/echo", headers={"Host": "q.localhost"})
    idle.getresponse().read()

    # A slow request is in flight when SIGTERM arrives.
    result: list[int] = []
    slow = threading.Thread(
        target=lambda: result.append(router.get("q.localhost", "/slow?s=0.6")[0])
    )
    slow.start()
    time.sleep(0.2)
    router.proc.send_signal(signal.SIGTERM)
    slow.join(5)
    assert result == [200]

    # The process exits cleanly, removes its pid file and stops listening.
    assert router.proc.wait(5) == 0
    assert not (router.run_dir / "router.pid").exists()
    with pytest.raises(ConnectionRefusedError):
        router.get("q.localhost")
    # The idle keep-alive connection was closed, not left hanging.
    assert idle.sock is not None
    idle.sock.settimeout(2)
    assert idle.sock.recv(1) == b""
    idle.close()


def test_a_taken_port_makes_startup_fail(router: Router) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", router.port))
        taken.listen()
        with pytest.raises(AssertionError, match="exited while starting"):
            router.start()
    assert router.proc is not None
    assert router.proc.wait(5) == 1
