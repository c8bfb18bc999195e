"""App states, dyno failures and timeouts, as the client and the app's log see them."""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

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
_FIELD_RE = re.compile(r'(\w+)=("[^"]*"|\S*)')
__all__ = ["backends", "router"]


def _fields(line: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in _FIELD_RE.findall(line)}


@pytest.mark.parametrize(
    ("state", "code", "level"),
    [
        ("no-web", "H14", "error"),
        ("not-deployed", "H81", "info"),
        ("maintenance", "H80", "info"),
        ("crashed", "H10", "error"),
    ],
)
def test_app_states_answer_with_their_h_code(
    router: Router, state: str, code: str, level: str
) -> None:
    router.write_routes({"st": app(["st.localhost"], state=state)})
    logs = router.log_socket()
    router.start()

    status, headers, _ = router.get("st.localhost", "/x?y=1")
    assert status == 503
    [(app_name, line)] = read_logs(logs, 2, wait=0.5)
    assert app_name == "st"
    f = _fields(line)
    assert (f["at"], f["code"], f["status"], f["path"]) == (
        level,
        code,
        "503",
        "/x?y=1",
    )
    assert f["request_id"] == headers["X-Request-Id"]
    assert f["dyno"] == ""


def test_booting_app_holds_the_request_until_a_dyno_is_up(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    be = backends("be")
    router.write_routes({"b": app(["b.localhost"], state="booting")})
    router.start()

    # The dyno comes up while the request waits.
    timer = threading.Timer(
        0.5,
        router.write_routes,
        [{"b": app(["b.localhost"], dynos=[be.dyno("web.1")])}],
    )
    timer.start()
    began = time.monotonic()
    status, _, _ = router.get("b.localhost")
    timer.join()
    assert status == 200
    assert time.monotonic() - began >= 0.45


def test_booting_too_long_is_h20(router: Router) -> None:
    router.write_routes({"b": app(["b.localhost"], state="booting")})
    logs = router.log_socket()
    router.start("--boot-wait", "0.4")

    began = time.monotonic()
    status, _, _ = router.get("b.localhost")
    assert status == 503
    assert 0.35 <= time.monotonic() - began < 3
    assert _fields(read_logs(logs, 1)[0][1])["code"] == "H20"


def test_refused_dyno_is_retried_on_another(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    be = backends("live")
    dead = {"name": "web.2", "addr": "127.0.0.1", "port": free_port()}
    router.write_routes({"r": app(["r.localhost"], dynos=[dead, be.dyno("web.1")])})
    router.start()

    for _ in range(10):
        status, _, body = router.get("r.localhost")
        assert status == 200
        assert echo(body)["backend"] == "live"


def test_all_dynos_refusing_is_h21(router: Router) -> None:
    dead = [
        {"name": f"web.{i}", "addr": "127.0.0.1", "port": free_port()} for i in (1, 2)
    ]
    router.write_routes({"r": app(["r.localhost"], dynos=dead)})
    logs = router.log_socket()
    router.start()

    status, _, _ = router.get("r.localhost")
    assert status == 503
    f = _fields(read_logs(logs, 1)[0][1])
    assert (f["code"], f["status"]) == ("H21", "503")
    # The last dyno tried, and how long its refusal took.
    assert f["dyno"] in ("web.1", "web.2") and f["connect"].endswith("ms")


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A loopback port where connecting hangs: a listener that never accepts,
    its accept queue full.  Linux drops a SYN to such a listener (the client
    sends it again and again) instead of refusing it."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        # Fill the queue until a connection attempt goes unanswered.
        for _ in range(8):
            probe = socket.socket()
            probe.settimeout(0.3)
            fillers.append(probe)
            try:
                probe.connect(("127.0.0.1", port))
            except TimeoutError:
                break
        else:
            pytest.fail("connections to a full accept queue did not hang")
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_dyno_not_answering_connects_in_time_is_h19(
    router: Router, unanswered_port: int
) -> None:
    dyno = {"name": "web.1", "addr": "127.0.0.1", "port": unanswered_port}
    router.write_routes({"t": app(["t.localhost"], dynos=[dyno])})
    logs = router.log_socket()
    router.start("--connect-timeout", "0.8", workers=1)

    began = time.monotonic()
    status, _, body = router.get("t.localhost", "/x")
    assert status == 503
    assert b"Application error" in body
    assert 0.75 <= time.monotonic() - began < 3
    [(_, line)] = read_logs(logs, 1)
    f = _fields(line)
    assert (f["at"], f["code"], f["desc"], f["status"], f["dyno"]) == (
        "error",
        "H19",
        "Backend connection timeout",
        "503",
        "web.1",
    )
    # As Heroku's line: the time the attempt took, that is the timeout.
    assert 750 <= int(f["connect"].removesuffix("ms")) < 1500


def test_no_first_byte_in_time_is_h12(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    be = backends("slow")
    router.write_routes({"t": app(["t.localhost"], dynos=[be.dyno("web.1")])})
    logs = router.log_socket()
    router.start("--first-byte-timeout", "0.4")

    began = time.monotonic()
    status, _, body = router.get("t.localhost", "/slow?s=2")
    assert status == 503
    assert b"Application error" in body
    assert time.monotonic() - began < 1.5
    f = _fields(read_logs(logs, 1)[0][1])
    assert (f["code"], f["dyno"], f["desc"]) == ("H12", "web.1", "Request timeout")
    assert 350 <= int(f["service"].removesuffix("ms")) < 1500


def test_dyno_closing_without_response_is_h13(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    be = backends("closer")
    router.write_routes({"c": app(["c.localhost"], dynos=[be.dyno("web.1")])})
    logs = router.log_socket()
    router.start()

    status, _, _ = router.get("c.localhost", "/close")
    assert status == 503
    assert _fields(read_logs(logs, 1)[0][1])["code"] == "H13"


@pytest.mark.parametrize(
    ("request_bytes", "abortive"),
    [
        # Gone while waiting for a slow dyno's answer.  A FIN alone would be a
        # half-close, which the router honours by still sending the response;
        # a reset says the client can no longer read it.
        (b"GET /slow?s=5 HTTP/1.1\r\nHost: g.localhost\r\n\r\n", True),
        # Gone halfway through its request body: a plain close is enough.
        (
            b"POST /echo HTTP/1.1\r\nHost: g.localhost\r\nContent-Length: 1000\r\n"
            b"\r\nfirst part",
            False,
        ),
    ],
    ids=["awaiting-response", "mid-body"],
)
def test_client_closing_before_the_response_is_h27(
    router: Router,
    backends: Callable[[str], Backend],
    request_bytes: bytes,
    abortive: bool,
) -> None:
    be = backends("be")
    router.write_routes({"g": app(["g.localhost"], dynos=[be.dyno("web.1")])})
    logs = router.log_socket()
    router.start(workers=1)

    s = socket.create_connection(("127.0.0.1", router.port), timeout=5)
    s.sendall(request_bytes)
    # Give the router time to pass the request on to the dyno.
    time.sleep(0.3)
    if abortive:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    began = time.monotonic()
    s.close()

    # Logged as the client leaves, not when the dyno would have answered.
    [(_, line)] = read_logs(logs, 1, wait=1.5)
    assert time.monotonic() - began < 1.5
    assert read_logs(logs, 1, wait=0.3) == []
    f = _fields(line)
    assert (f["at"], f["code"], f["desc"], f["status"], f["dyno"]) == (
        "warning",
        "H27",
        "Client Request Interrupted",
        "499",
        "web.1",
    )
    assert line.startswith('at=warning code=H27 desc="Client Request Interrupted" ')
    assert line.endswith(" protocol=http sock=client")


def test_malformed_request_is_400(router: Router) -> None:
    router.start()
    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nBad Header Line\r\n\r\n")
        data = s.recv(65536)
    assert data.startswith(b"HTTP/1.1 400 ")
