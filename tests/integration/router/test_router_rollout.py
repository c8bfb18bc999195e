"""What zero-failure rollouts need from the router: dynos leaving the table,
dead pooled connections, quarantined dynos."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import psutil
import pytest
from router_harness import (
    Backend,
    Router,
    app,
    backends,
    echo,
    free_port,
    read_logs,
    router,
)

pytestmark = pytest.mark.integration
__all__ = ["backends", "router"]


def _router_conns_to(port: int) -> int:
    """Established TCP connections whose far end is ``port`` on loopback."""
    return sum(
        1
        for c in psutil.net_connections("tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


def _wait(cond: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


class FlakyDyno:
    """Answers the first request on each connection, then drops the connection
    when the next request arrives: a dyno whose keep-alive timeout fired just
    as the router reused the connection.  ``reset`` drops it with a RST."""

    def __init__(self, reset: bool) -> None:
        self.reset = reset
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def dyno(self) -> dict[str, object]:
        return {"name": "web.1", "addr": "127.0.0.1", "port": self.port}

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        served = 0
        data = b""
        with conn:
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                data += chunk
                head, sep, rest = data.partition(b"\r\n\r\n")
                if not sep:
                    continue
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                if len(rest) < length:
                    continue
                self.requests.append(head.split(b"\r\n", 1)[0])
                data = rest[length:]
                if served:
                    if self.reset:
                        linger = struct.pack("ii", 1, 0)
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                    return
                served += 1
                body = b"len=%d" % length
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(body), body)
                )

    def close(self) -> None:
        self.sock.close()
        for conn in self._conns:
            conn.close()


@pytest.fixture(params=[False, True], ids=["fin", "rst"])
def flaky(request: pytest.FixtureRequest) -> Iterator[FlakyDyno]:
    dyno = FlakyDyno(reset=request.param)
    yield dyno
    dyno.close()


def test_in_flight_request_on_a_removed_dyno_finishes_and_its_pool_closes(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    old, new = backends("old"), backends("new")
    router.write_routes({"ro": app(["ro.localhost"], dynos=[old.dyno("web.1")])})
    router.start(workers=1)

    # Warm the pool to the old dyno, then keep one request busy on it.
    for _ in range(3):
        assert router.get("ro.localhost")[0] == 200
    assert _router_conns_to(old.port) >= 1
    result: list[tuple[int, bytes]] = []
    slow = threading.Thread(
        target=lambda: result.append(
            router.get("ro.localhost", "/slow?s=2")[::2]  # (status, body)
        )
    )
    slow.start()
    time.sleep(0.8)

    # The old dyno leaves the table: new requests go to the new dyno at once,
    # the busy request still finishes on the old one.
    router.set_routes({"ro": app(["ro.localhost"], dynos=[new.dyno("web.2")])})
    assert echo(router.get("ro.localhost")[2])["backend"] == "new"
    slow.join(10)
    [(status, body)] = result
    assert status == 200
    assert echo(body)["backend"] == "old"

    # No connection to the old dyno stays open, pooled or otherwise.
    assert _wait(lambda: _router_conns_to(old.port) == 0, timeout=5)


def test_dead_pooled_connection_is_retried_for_idempotent_requests(
    router: Router, flaky: FlakyDyno
) -> None:
    router.write_routes({"f": app(["f.localhost"], dynos=[flaky.dyno()])})
    logs = router.log_socket()
    router.start(workers=1)

    # Each request after the first meets a pooled connection the dyno drops;
    # GET, and PUT with its body, go out again on a new connection.
    assert router.get("f.localhost", "/one")[0] == 200
    status, _, body = router.get("f.localhost", "/two")
    assert (status, body) == (200, b"len=0")
    status, _, body = router.get("f.localhost", "/three", "PUT", body=b"x" * 5000)
    assert (status, body) == (200, b"len=5000")
    assert flaky.requests.count(b"GET /two HTTP/1.1") == 2
    assert flaky.requests.count(b"PUT /three HTTP/1.1") == 2

    # POST is not idempotent: it may have been applied, so it is not repeated.
    status, _, _ = router.get("f.localhost", "/four", "POST", body=b"y")
    assert status == 503
    assert flaky.requests.count(b"POST /four HTTP/1.1") == 1
    lines = [line for _, line in read_logs(logs, 4)]
    assert "code=H13" in lines[-1]
    assert all("status=200" in line for line in lines[:3])


def test_every_dyno_quarantined_waits_for_one_then_h99(router: Router) -> None:
    port = free_port()
    dead = {"name": "web.1", "addr": "127.0.0.1", "port": port}
    router.write_routes({"q": app(["q.localhost"], dynos=[dead])})
    logs = router.log_socket()
    router.start("--connect-budget", "0.5", workers=1)

    # The refusal quarantines the only dyno; the next request waits out the
    # connect budget for it and gives up with H99.
    assert router.get("q.localhost")[0] == 503
    began = time.monotonic()
    assert router.get("q.localhost")[0] == 503
    assert 0.45 <= time.monotonic() - began < 3
    codes = [line.split()[1] for _, line in read_logs(logs, 2)]
    assert codes == ["code=H21", "code=H99"]


def test_quarantined_dyno_is_tried_again_when_its_quarantine_ends(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    router.start("--quarantine", "0.4", workers=1)
    port = free_port()
    dead = {"name": "web.1", "addr": "127.0.0.1", "port": port}
    router.set_routes({"q": app(["q.localhost"], dynos=[dead])})
    assert router.get("q.localhost")[0] == 503

    # The dyno comes up on that port; a request held for the quarantine gets it.
    be = backends("late", port=port)
    began = time.monotonic()
    status, _, body = router.get("q.localhost")
    assert status == 200
    assert echo(body)["backend"] == be.name
    assert time.monotonic() - began < 2


def test_a_connect_that_outlasts_a_table_swap_goes_to_the_new_dyno(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    # The old web.1's accept queue is full, so the router's SYN is dropped and
    # sent again after a second; by then a new table has replaced web.1 and
    # the old one has stopped listening, so the second SYN is refused.
    old = socket.socket()
    old.bind(("127.0.0.1", 0))
    old.listen(0)
    fillers = []
    for _ in range(2):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(old.getsockname())
        fillers.append(filler)
    time.sleep(0.1)
    stale = {"name": "web.1", "addr": "127.0.0.1", "port": old.getsockname()[1]}
    router.set_routes({"sw": app(["sw.localhost"], dynos=[stale])})
    router.start(workers=1)
    new = backends("new")
    answer: list[tuple[int, bytes]] = []

    def ask() -> None:
        status, _, body = router.get("sw.localhost")
        answer.append((status, body))

    asking = threading.Thread(target=ask)
    began = time.monotonic()
    asking.start()
    try:
        time.sleep(0.4)
        router.set_routes({"sw": app(["sw.localhost"], dynos=[new.dyno("web.1")])})
    finally:
        old.close()
        for filler in fillers:
            filler.close()
    asking.join(10)
    ((status, body),) = answer
    assert status == 200, body
    assert echo(body)["backend"] == "new"
    assert time.monotonic() - began < 3
