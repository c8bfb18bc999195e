"""Bad input of every kind: the right error or a clean close, never a crash,
never a leaked connection or file descriptor, and good requests keep flowing."""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Callable

import psutil
import pytest
from router_harness import Backend, Router, app, backends, router

pytestmark = pytest.mark.integration
__all__ = ["backends", "router"]

_HOST = b"fz.localhost"


def _exchange(port: int, data: bytes, shut: bool = False, wait: float = 5) -> bytes:
    """Send ``data`` on a new connection; everything the router sends back
    until it closes (or ``wait`` seconds pass, which fails the test)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        try:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                pytest.fail(f"the router neither answered nor closed: {data[:60]!r}")
            if not chunk:
                break
            out += chunk
            # A refused request closes the connection; a served one may not.
            if b" 200 OK\r\n" in out and out.endswith(b"}"):
                break
        else:
            pytest.fail(f"the router neither answered nor closed: {data[:60]!r}")
    return out


def _status(out: bytes) -> int | None:
    return int(out[9:12]) if out.startswith(b"HTTP/1.1 ") else None


def _get(host: bytes = _HOST) -> bytes:
    return b"GET /echo HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"


# (request bytes, statuses allowed; None means a close without an answer)
CASES: list[tuple[str, bytes, set[int | None]]] = [
    ("garbage line", b"GARBAGE\r\n\r\n", {400}),
    ("header without colon", b"GET / HTTP/1.1\r\nHost: a\r\nBad Line\r\n\r\n", {400}),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : fz.localhost\r\n\r\n", {400}),
    ("nul in header", b"GET / HTTP/1.1\r\nHost: fz.localhost\r\nX: a\x00b\r\n\r\n",
     {400}),
    ("bad version", b"GET / HTTP/7.3\r\nHost: fz.localhost\r\n\r\n", {400, 505}),
    ("no host", b"GET / HTTP/1.1\r\n\r\n", {400}),
    ("two hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
    ("conflicting length",
     b"POST / HTTP/1.1\r\nHost: fz.localhost\r\nContent-Length: 3\r\n"
     b"Content-Length: 4\r\n\r\nabcd", {400}),
    ("negative length",
     b"POST / HTTP/1.1\r\nHost: fz.localhost\r\nContent-Length: -1\r\n\r\n", {400}),
    ("length and chunked",
     b"POST / HTTP/1.1\r\nHost: fz.localhost\r\nContent-Length: 3\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
    ("bad chunk size",
     b"POST / HTTP/1.1\r\nHost: fz.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"zz\r\nabc\r\n", {400}),
    ("long request line", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
     {400}),
    ("long header line",
     b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", {400}),
    ("too many headers",
     b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-N: 1\r\n" * 1001 + b"\r\n", {400}),
    ("unsupported expect",
     b"GET / HTTP/1.1\r\nHost: fz.localhost\r\nExpect: teapot\r\n\r\n", {417}),
    ("half-closed after a request", _get(), {200}),
    ("half-closed mid-head", b"GET / HTTP/1.1\r\nHost: fz.lo", {None}),
    ("cut mid-body",
     b"POST /echo HTTP/1.1\r\nHost: fz.localhost\r\nContent-Length: 1000\r\n\r\nab",
     {None}),
]  # fmt: skip


def _worker(router: Router) -> psutil.Process:
    assert router.proc is not None
    [worker] = psutil.Process(router.proc.pid).children()
    return worker


def _fds_not_pooled(worker: psutil.Process, backend_port: int) -> int:
    """The worker's open fds, less its (legitimately pooled) dyno connections."""
    pooled = sum(
        1
        for c in worker.net_connections("tcp")
        if c.raddr and c.raddr.port == backend_port
    )
    return len(os.listdir(f"/proc/{worker.pid}/fd")) - pooled


def _client_conns(port: int) -> int:
    return sum(
        1
        for c in psutil.net_connections("tcp")
        if c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


def test_bad_input_gets_an_error_or_a_clean_close_and_leaks_nothing(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    be = backends("be")
    router.write_routes({"fz": app(["fz.localhost"], dynos=[be.dyno("web.1")])})
    router.start("--header-timeout", "1", workers=1)
    worker = _worker(router)
    assert _status(_exchange(router.port, _get())) == 200
    before = _fds_not_pooled(worker, be.port)

    # Each case on its own connection, and a good request after each.
    for name, data, allowed in CASES:
        shut = name.startswith(("half-closed", "cut"))
        out = _exchange(router.port, data, shut=shut)
        assert _status(out) in allowed, (name, out[:200])
        assert _status(_exchange(router.port, _get())) == 200, name

    # Random bytes, and random damage to a good request.
    rng = random.Random(4)
    good = _get()
    for _ in range(60):
        if rng.random() < 0.5:
            data = rng.randbytes(rng.randint(1, 300)) + b"\r\n\r\n"
        else:
            damaged = bytearray(good)
            for _ in range(rng.randint(1, 4)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            data = bytes(damaged)
        out = _exchange(router.port, data, shut=True)
        assert _status(out) in {200, 400, 404, 417, 505, None}, (data, out[:100])
    assert _status(_exchange(router.port, _get())) == 200

    # The worker is the same process, holding what it held before.
    assert worker.is_running() and _worker(router).pid == worker.pid
    deadline = time.monotonic() + 3
    while _fds_not_pooled(worker, be.port) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _fds_not_pooled(worker, be.port) <= before
    assert _client_conns(router.port) == 0


def test_slow_loris_is_cut_at_the_header_timeout_while_others_are_served(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    be = backends("be")
    router.write_routes({"fz": app(["fz.localhost"], dynos=[be.dyno("web.1")])})
    router.start("--header-timeout", "1", workers=1)

    # Slow clients dribble a head that never ends, one line every 0.3 s.
    slow = [socket.create_connection(("127.0.0.1", router.port)) for _ in range(5)]
    try:
        for s in slow:
            s.sendall(b"GET / HTTP/1.1\r\nHost: fz.localhost\r\n")
        began = time.monotonic()
        closed: set[int] = set()
        while len(closed) < len(slow) and time.monotonic() - began < 5:
            for i, s in enumerate(slow):
                if i in closed:
                    continue
                try:
                    s.sendall(b"X-Slow: 1\r\n")
                    s.settimeout(0.01)
                    if s.recv(1) == b"":
                        closed.add(i)
                except TimeoutError:
                    pass
                except OSError:
                    closed.add(i)
            # Meanwhile a normal client is served at once.
            assert _status(_exchange(router.port, _get(), wait=2)) == 200
            time.sleep(0.3)
        elapsed = time.monotonic() - began
        assert len(closed) == len(slow)
        # Header timeout 1 s, looked at once a second.
        assert 0.9 <= elapsed < 3.5
    finally:
        for s in slow:
            s.close()
