"""Flow control end to end: a slow reader on either side holds the other back.

The router relays bodies as they come and stops reading from one side while
the other side's socket is full, so a client that stops reading (or a dyno
that stops reading an upload) never makes it buffer a body.  These tests move
bodies far larger than every socket buffer on the way and watch the router
worker's resident memory and how far the fast side got: for one request each
way, for pipelined requests whose dyno connections are made while the
client's socket is full, and for an upload whose dyno gives up on it.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from router_harness import Router, app, read_logs, router

pytestmark = pytest.mark.integration
__all__ = ["router"]

MiB = 1024 * 1024
# Far more than every kernel buffer between the two ends (tcp_rmem may let a
# receive buffer grow to 32 MiB on each of the four sockets).
BODY = 256 * MiB
PAUSE = 3.0
# A block of the body: not all one byte, so a reordered or dropped block shows.
_BLOCK = hashlib.shake_256(b"dynod flow control").digest(MiB)


def _body_digest(size: int) -> str:
    digest = hashlib.sha256()
    for _ in range(size // MiB):
        digest.update(_BLOCK)
    return digest.hexdigest()


@dataclass
class Dyno:
    """A raw dyno run by threads (one of the ``_serve_*`` functions):
    ``moved`` counts the large body's bytes it has sent (download) or
    received (upload); ``resume`` lets a dyno that waits go on."""

    listener: socket.socket
    moved: int = 0
    error: Exception | None = None
    resume: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the end of the head")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _answer_each(dyno: Dyno, answer: Callable[[socket.socket], None]) -> None:
    """Run ``answer`` in a thread for every connection, until the test closes
    the listener."""
    try:
        while True:
            conn, _ = dyno.listener.accept()
            threading.Thread(target=answer, args=(conn,), daemon=True).start()
    except OSError:
        return


def _serve_download(dyno: Dyno) -> None:
    """Answer one request with BODY bytes, sent as fast as they are taken."""
    try:
        conn, _ = dyno.listener.accept()
        with conn:
            _read_head(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BODY)
            block = memoryview(_BLOCK)
            for _ in range(BODY // MiB):
                conn.sendall(block)
                dyno.moved += len(block)
    except Exception as exc:
        # The thread cannot fail the test itself: the test reads this.
        dyno.error = exc


def _serve_upload(dyno: Dyno) -> None:
    """Take one request's head, read nothing more until told, then read the
    whole body and answer with its digest."""
    try:
        conn, _ = dyno.listener.accept()
        with conn:
            _, rest = _read_head(conn)
            dyno.resume.wait(30)
            digest = hashlib.sha256(rest)
            got = len(rest)
            buf = bytearray(MiB)
            while got < BODY:
                n = conn.recv_into(buf)
                if not n:
                    break
                digest.update(memoryview(buf)[:n])
                got += n
            dyno.moved = got
            answer = digest.hexdigest().encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                % (len(answer), answer)
            )
    except Exception as exc:
        # The thread cannot fail the test itself: the test reads this.
        dyno.error = exc


_SMALL = 4096


def _serve_closing(dyno: Dyno) -> None:
    """Answer each connection's one request, ``/small`` with a few KiB and
    anything else with BODY bytes, then close it (``Connection: close``)."""

    def answer(conn: socket.socket) -> None:
        with conn:
            head, _ = _read_head(conn)
            size = _SMALL if head.startswith(b"GET /small ") else BODY
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n" % size
            )
            block = memoryview(_BLOCK)
            for start in range(0, size, MiB):
                part = block[: min(MiB, size - start)]
                conn.sendall(part)
                if size == BODY:
                    dyno.moved += len(part)

    _answer_each(dyno, answer)


def _serve_early(dyno: Dyno) -> None:
    """Refuse an upload with 413 before reading its body, then close; answer
    any other request with 200."""

    def answer(conn: socket.socket) -> None:
        with conn:
            head, _ = _read_head(conn)
            if head.startswith(b"GET "):
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nConnection: close\r\n"
                    b"Content-Length: 5\r\n\r\nafter"
                )
                return
            # Long enough for the upload to fill the socket buffers.
            time.sleep(1)
            conn.sendall(
                b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\n"
                b"Content-Length: 0\r\n\r\n"
            )
            conn.shutdown(socket.SHUT_WR)
            dyno.resume.wait(30)

    _answer_each(dyno, answer)


@pytest.fixture
def dyno() -> Iterator[Dyno]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)
    d = Dyno(listener)
    try:
        yield d
    finally:
        d.resume.set()
        listener.close()


def _worker(router: Router) -> psutil.Process:
    assert router.proc is not None
    [worker] = psutil.Process(router.proc.pid).children()
    return worker


def _rss(proc: psutil.Process) -> int:
    """VmRSS of ``proc``, in bytes."""
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {proc.pid}")


def _check_held_back(sender: str, early: int, late: int, grown: int) -> None:
    """The fast side sent ``early`` then ``late`` bytes while the other side
    read nothing, and the worker's RSS grew by ``grown`` meanwhile."""
    said = (
        f"{sender} sent {early / MiB:.1f} MiB, then {late / MiB:.1f} MiB; "
        f"the router grew by {grown / MiB:.1f} MiB"
    )
    # What fits in the socket buffers on the way, not the body.
    assert late < BODY / 4, said
    assert late - early < 4 * MiB, said
    assert grown < 16 * MiB, said


def _start(router: Router, dyno: Dyno) -> psutil.Process:
    target = {"name": "web.1", "addr": "127.0.0.1", "port": dyno.port}
    router.write_routes({"f": app(["f.localhost"], dynos=[target])})
    router.start(workers=1)
    return _worker(router)


def test_a_client_that_stops_reading_holds_the_dyno_back(
    router: Router, dyno: Dyno
) -> None:
    worker = _start(router, dyno)
    logs = router.log_socket()
    server = threading.Thread(target=_serve_download, args=(dyno,), daemon=True)
    server.start()
    rss_before = _rss(worker)

    with socket.create_connection(("127.0.0.1", router.port), timeout=30) as s:
        s.sendall(b"GET /big HTTP/1.1\r\nHost: f.localhost\r\n\r\n")
        head, rest = _read_head(s)
        assert head.startswith(b"HTTP/1.1 200 ")

        # The client reads nothing for a while: the dyno soon cannot send more.
        time.sleep(PAUSE / 3)
        early = dyno.moved
        time.sleep(PAUSE * 2 / 3)
        late = dyno.moved
        grown = _rss(worker) - rss_before

        # Then it reads the rest, and gets the whole body intact.
        digest = hashlib.sha256(rest)
        got = len(rest)
        buf = bytearray(MiB)
        while got < BODY:
            n = s.recv_into(buf)
            assert n, f"the body ended after {got} bytes"
            digest.update(memoryview(buf)[:n])
            got += n
    server.join(30)
    assert dyno.error is None
    assert (got, digest.hexdigest()) == (BODY, _body_digest(BODY))

    _check_held_back("the dyno", early, late, grown)
    [(_, line)] = read_logs(logs, 1)
    assert f"status=200 bytes={BODY} " in line


def test_a_dyno_that_stops_reading_holds_the_client_back(
    router: Router, dyno: Dyno
) -> None:
    worker = _start(router, dyno)
    server = threading.Thread(target=_serve_upload, args=(dyno,), daemon=True)
    server.start()
    rss_before = _rss(worker)

    sent = 0
    with socket.create_connection(("127.0.0.1", router.port), timeout=30) as s:

        def upload() -> None:
            nonlocal sent
            s.sendall(
                b"POST /up HTTP/1.1\r\nHost: f.localhost\r\nContent-Length: %d\r\n\r\n"
                % BODY
            )
            block = memoryview(_BLOCK)
            for _ in range(BODY // MiB):
                s.sendall(block)
                sent += len(block)

        client = threading.Thread(target=upload, daemon=True)
        client.start()
        # The dyno reads nothing for a while: the client soon cannot send more.
        time.sleep(PAUSE / 3)
        early = sent
        time.sleep(PAUSE * 2 / 3)
        late = sent
        grown = _rss(worker) - rss_before

        # Then the dyno reads it all, and the client gets its answer.
        dyno.resume.set()
        client.join(60)
        head, answer = _read_head(s)
        while len(answer) < 64:
            answer += s.recv(64)
    server.join(30)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert dyno.error is None
    assert (dyno.moved, answer.decode()) == (BODY, _body_digest(BODY))

    _check_held_back("the client", early, late, grown)


def test_a_pipelining_client_that_stops_reading_holds_every_dyno_back(
    router: Router, dyno: Dyno
) -> None:
    worker = _start(router, dyno)
    threading.Thread(target=_serve_closing, args=(dyno,), daemon=True).start()
    rss_before = _rss(worker)

    # Small responses, more than the socket buffers hold, then a large one,
    # each from its own dyno connection.  One of the small ones ends as the
    # client's socket fills: the connections made after it must wait too.
    count = 2048
    small = b"GET /small HTTP/1.1\r\nHost: f.localhost\r\n\r\n"
    requests = small * count + b"GET /big HTTP/1.1\r\nHost: f.localhost\r\n\r\n"
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(30)
        s.connect(("127.0.0.1", router.port))
        sender = threading.Thread(target=s.sendall, args=(requests,), daemon=True)
        sender.start()
        time.sleep(PAUSE / 3)
        early = dyno.moved
        time.sleep(PAUSE * 2 / 3)
        late = dyno.moved
        grown = _rss(worker) - rss_before

        # Then every response arrives, in order and whole.
        stream = s.makefile("rb")
        for i in range(count + 1):
            status = stream.readline()
            assert status.startswith(b"HTTP/1.1 200 "), (i, status)
            length = 0
            while (line := stream.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            assert length == (_SMALL if i < count else BODY)
            digest = hashlib.sha256()
            while length:
                data = stream.read(min(MiB, length))
                assert data, f"response {i} ended early"
                digest.update(data)
                length -= len(data)
        sender.join(10)
    assert digest.hexdigest() == _body_digest(BODY)
    _check_held_back("the dyno", early, late, grown)


def test_an_upload_refused_early_leaves_the_connection_usable(
    router: Router, dyno: Dyno
) -> None:
    _start(router, dyno)
    threading.Thread(target=_serve_early, args=(dyno,), daemon=True).start()
    size = 64 * MiB

    with socket.create_connection(("127.0.0.1", router.port), timeout=30) as s:

        def upload() -> None:
            s.sendall(
                b"POST /up HTTP/1.1\r\nHost: f.localhost\r\nContent-Length: %d\r\n\r\n"
                % size
            )
            block = memoryview(_BLOCK)
            for _ in range(size // MiB):
                s.sendall(block)
            s.sendall(b"GET /next HTTP/1.1\r\nHost: f.localhost\r\n\r\n")

        client = threading.Thread(target=upload, daemon=True)
        client.start()
        stream = s.makefile("rb")
        assert stream.readline().startswith(b"HTTP/1.1 413 ")

        # The dyno that held the upload back is gone: the rest of the body is
        # read (and dropped), and the next request on the connection served.
        client.join(15)
        assert not client.is_alive(), "the router stopped reading the upload"
        while stream.readline() != b"\r\n":
            pass
        assert stream.readline().startswith(b"HTTP/1.1 200 ")
