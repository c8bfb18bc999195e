"""Backlog, idle timeouts, ``Expect: 100-continue`` and HTTP/1.0, end to end."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable

import pytest
from router_harness import Backend, Router, app, backends, echo, read_logs, router

pytestmark = pytest.mark.integration
__all__ = ["backends", "router"]
_FIELD_RE = re.compile(r'(\w+)=("[^"]*"|\S*)')


def _fields(line: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in _FIELD_RE.findall(line)}


def _read_all(s: socket.socket) -> bytes:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


def test_backlog_beyond_the_limit_is_h11_at_once(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    be = backends("be")
    router.write_routes({"bk": app(["bk.localhost"], dynos=[be.dyno("web.1")])})
    logs = router.log_socket()
    router.start("--backlog-per-dyno", "2", workers=1)

    # Two slow requests fill the backlog of the app's one dyno.
    slow = [
        threading.Thread(target=router.get, args=("bk.localhost", "/slow?s=1.5"))
        for _ in range(2)
    ]
    for t in slow:
        t.start()
    time.sleep(0.5)
    began = time.monotonic()
    assert router.get("bk.localhost")[0] == 503
    assert time.monotonic() - began < 0.5
    for t in slow:
        t.join()

    # Once they are done there is room again.
    assert router.get("bk.localhost")[0] == 200
    codes = [_fields(line).get("code") for _, line in read_logs(logs, 4)]
    assert codes.count("H11") == 1 and codes.count(None) == 3


def test_a_response_that_goes_quiet_is_cut_with_h15(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    be = backends("be")
    router.write_routes({"id": app(["id.localhost"], dynos=[be.dyno("web.1")])})
    logs = router.log_socket()
    router.start("--idle-timeout", "1", workers=1)

    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as s:
        s.sendall(b"GET /stream?n=3&gap=3 HTTP/1.1\r\nHost: id.localhost\r\n\r\n")
        began = time.monotonic()
        data = _read_all(s)
    assert data.startswith(b"HTTP/1.1 200 ") and b"chunk 0" in data
    assert b"chunk 1" not in data
    assert 0.9 <= time.monotonic() - began < 2.9
    f = _fields(read_logs(logs, 1)[0][1])
    assert (f["code"], f["desc"], f["at"]) == ("H15", "Idle connection", "error")


def test_a_client_that_stops_sending_its_body_gets_h28(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    be = backends("be")
    router.write_routes({"id": app(["id.localhost"], dynos=[be.dyno("web.1")])})
    logs = router.log_socket()
    router.start("--idle-timeout", "1", workers=1)

    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as s:
        s.sendall(
            b"POST /echo HTTP/1.1\r\nHost: id.localhost\r\nContent-Length: 100\r\n"
            b"\r\n0123456789"
        )
        data = _read_all(s)
    assert data.startswith(b"HTTP/1.1 499 ")
    f = _fields(read_logs(logs, 1)[0][1])
    assert (f["code"], f["status"], f["at"]) == ("H28", "499", "warning")


def test_expect_100_continue_is_answered_by_the_router(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    be = backends("be")
    router.write_routes({"ex": app(["ex.localhost"], dynos=[be.dyno("web.1")])})
    router.start(workers=1)

    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
        s.sendall(
            b"PUT /echo HTTP/1.1\r\nHost: ex.localhost\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        assert s.recv(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hello")
        data = _read_all(s)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    doc = echo(body)
    assert doc["body_len"] == 5
    # The dyno never sees the expectation: the router met it.
    assert "expect" not in doc["h"]


def test_http10_client_gets_a_chunked_response_close_delimited(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    be = backends("be")
    router.write_routes({"o": app(["o.localhost"], dynos=[be.dyno("web.1")])})
    router.start(workers=1)

    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
        s.sendall(b"GET /stream?n=2&gap=0.1 HTTP/1.0\r\nHost: o.localhost\r\n\r\n")
        data = _read_all(s)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert b"\r\nConnection: close" in head
    assert body.startswith(b"chunk 0") and body.count(b"chunk") == 2
