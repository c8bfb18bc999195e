"""Responses past Heroku's limits (H25), malformed responses (H17), dynos
cutting a response (H18), and the cause named on refused requests (H26)."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator

import pytest
from router_harness import Router, app, read_logs, router

pytestmark = pytest.mark.integration
_FIELD_RE = re.compile(r'(\w+)=("[^"]*"|\S*)')
__all__ = ["router"]

# What the raw dyno answers, by request path.
_BIG = b"x" * 9000
_RESPONSES = {
    "/cookie": b"HTTP/1.1 200 OK\r\nSet-Cookie: a=" + _BIG + b"\r\n"
    b"Content-Length: 2\r\n\r\nok",
    "/status": b"HTTP/1.1 200 " + _BIG + b"\r\nContent-Length: 2\r\n\r\nok",
    "/head": b"HTTP/1.1 200 OK\r\n"
    + b"".join(b"X-H%d: %s\r\n" % (i, b"y" * 1000) for i in range(600))
    + b"Content-Length: 2\r\n\r\nok",
    # One long header line within 512 KB is allowed.
    "/long": b"HTTP/1.1 200 OK\r\nX-Long: " + _BIG + b"\r\nContent-Length: 2\r\n\r\nok",
    "/cut": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
    # Poorly formatted responses (H17).
    "/bad-status": b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok",
    "/not-http": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "/bare-lf": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    "/no-reason": b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok",
    "/low-status": b"HTTP/1.1 099 Low\r\nContent-Length: 2\r\n\r\nok",
    "/high-status": b"HTTP/1.1 600 High\r\nContent-Length: 2\r\n\r\nok",
}


@pytest.fixture
def raw_dyno() -> Iterator[int]:
    """A dyno on loopback that sends a canned response per path, then closes."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    more = conn.recv(65536)
                    if not more:
                        break
                    data += more
                path = data.split(b" ", 2)[1].decode() if data else ""
                conn.sendall(_RESPONSES.get(path, _RESPONSES["/cut"]))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(srv.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        srv.close()


def _fields(line: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in _FIELD_RE.findall(line)}


def _raw(router: Router, request: bytes) -> bytes:
    """Send ``request`` on a new connection; everything received until close."""
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_oversized_response_heads_are_h25_and_long_lines_pass(
    router: Router, raw_dyno: int
) -> None:
    dyno = {"name": "web.1", "addr": "127.0.0.1", "port": raw_dyno}
    router.write_routes({"l": app(["l.localhost"], dynos=[dyno])})
    logs = router.log_socket()
    router.start()

    for path in ("/cookie", "/status", "/head"):
        status, _, _ = router.get("l.localhost", path)
        assert status == 502, path
        [(_, line)] = read_logs(logs, 1)
        f = _fields(line)
        assert (f["code"], f["status"], f["path"]) == ("H25", "502", path)
    status, headers, body = router.get("l.localhost", "/long")
    assert (status, body, headers["X-Long"]) == (200, b"ok", "x" * 9000)


@pytest.mark.parametrize(
    "path",
    [
        "/bad-status",
        "/not-http",
        "/bare-lf",
        "/no-reason",
        "/low-status",
        "/high-status",
    ],
)
def test_poorly_formatted_responses_are_h17(
    router: Router, raw_dyno: int, path: str
) -> None:
    dyno = {"name": "web.1", "addr": "127.0.0.1", "port": raw_dyno}
    router.write_routes({"p": app(["p.localhost"], dynos=[dyno])})
    logs = router.log_socket()
    router.start(workers=1)

    status, _, body = router.get("p.localhost", path)
    assert status == 503
    assert b"Application error" in body
    [(_, line)] = read_logs(logs, 1)
    f = _fields(line)
    assert (f["at"], f["code"], f["desc"], f["status"], f["dyno"], f["path"]) == (
        "error",
        "H17",
        "Poorly formatted HTTP response",
        "503",
        "web.1",
        path,
    )


def test_dyno_closing_mid_response_is_h18(router: Router, raw_dyno: int) -> None:
    dyno = {"name": "web.1", "addr": "127.0.0.1", "port": raw_dyno}
    router.write_routes({"c": app(["c.localhost"], dynos=[dyno])})
    logs = router.log_socket()
    router.start()

    got = _raw(router, b"GET /cut HTTP/1.1\r\nHost: c.localhost\r\n\r\n")
    # The client sees the head and the bytes that came, then the connection ends.
    assert got.startswith(b"HTTP/1.1 200 OK\r\n")
    assert got.endswith(b"\r\n\r\nonly ten b")
    [(_, line)] = read_logs(logs, 1)
    f = _fields(line)
    assert (f["at"], f["code"], f["desc"], f["sock"]) == (
        "error",
        "H18",
        "Server Request Interrupted",
        "backend",
    )
    assert line.endswith(" sock=backend")


@pytest.mark.parametrize(
    ("request_head", "status", "cause"),
    [
        (
            b"GET / HTTP/1.1\r\nHost: r.localhost\r\nHost: r.localhost\r\n\r\n",
            400,
            "bad header",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: r.localhost\r\nExpect: 200-ok\r\n"
            b"Content-Length: 2\r\n\r\nab",
            417,
            "unsupported expect header value",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: r.localhost\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
            400,
            "bad chunk",
        ),
    ],
)
def test_refused_requests_log_their_cause(
    router: Router, request_head: bytes, status: int, cause: str
) -> None:
    # No dyno listens: a request that got through would be H21, not H26.
    dyno = {"name": "web.1", "addr": "127.0.0.1", "port": 1}
    router.write_routes({"r": app(["r.localhost"], dynos=[dyno])})
    logs = router.log_socket()
    router.start()

    got = _raw(router, request_head)
    assert got.startswith(b"HTTP/1.1 %d " % status), got[:80]
    [(_, line)] = read_logs(logs, 1)
    f = _fields(line)
    assert (f["code"], f["cause"], f["status"]) == ("H26", cause, str(status))
    assert line.startswith(f'at=error code=H26 desc="Request Error" cause="{cause}" ')


def test_app_page_urls_replace_the_router_pages(router: Router) -> None:
    pages = {"error": "https://errors.example.test/x", "maintenance": "http://m.test/"}
    router.write_routes(
        {
            "e": {**app(["e.localhost"], state="crashed"), "pages": pages},
            "m": {**app(["m.localhost"], state="maintenance"), "pages": pages},
        }
    )
    router.start()

    status, _, body = router.get("e.localhost", "/")
    assert status == 503
    assert b'content="0; url=https://errors.example.test/x"' in body
    status, _, body = router.get("m.localhost", "/")
    assert status == 503 and b'href="http://m.test/"' in body
