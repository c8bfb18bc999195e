"""Routing, headers, keep-alive and streaming through the real router process."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from router_harness import Backend, Router, app, backends, echo, router

pytestmark = pytest.mark.integration
__all__ = ["backends", "router"]


def test_host_picks_the_app_and_unknown_hosts_get_404(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    one, two = backends("one"), backends("two")
    router.write_routes(
        {
            "one": app(["one.localhost"], dynos=[one.dyno("web.1")]),
            "two": app(["two.localhost", "www.two.test"], dynos=[two.dyno("web.1")]),
        }
    )
    router.start()

    # Host is matched case-insensitively with any port removed.
    for host, expected in [
        ("one.localhost", "one"),
        ("ONE.Localhost:8080", "one"),
        ("www.two.test", "two"),
    ]:
        status, headers, body = router.get(host)
        assert status == 200, host
        assert echo(body)["backend"] == expected
        assert headers["X-Backend"] == expected

    status, _, body = router.get("nobody.localhost")
    assert status == 404
    assert b"No such app" in body


def test_requests_spread_randomly_across_web_dynos(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    a, b = backends("a"), backends("b")
    router.write_routes(
        {"s": app(["s.localhost"], dynos=[a.dyno("web.1"), b.dyno("web.2")])}
    )
    router.start()

    # Random choice per request, also on one keep-alive client connection.
    conn = router.connect()
    seen = []
    for _ in range(40):
        conn.request("GET", "/echo", headers={"Host": "s.localhost"})
        resp = conn.getresponse()
        seen.append(echo(resp.read())["backend"])
    conn.close()
    assert 5 <= seen.count("a") <= 35, seen


def test_headers_the_dyno_receives(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    be = backends("be")
    router.write_routes({"h": app(["h.localhost"], dynos=[be.dyno("web.1")])})
    router.start()

    # A valid incoming request id is kept and returned; forwarding is appended.
    good_id = "abcdefghij0123456789+/=-"
    before = int(time.time() * 1000)
    status, headers, body = router.get(
        "h.localhost",
        headers={
            "X-Request-Id": good_id,
            "X-Forwarded-For": "203.0.113.9",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Port": "1",
            "Via": "1.0 upstream",
            "Connection": "X-Secret",
            "X-Secret": "hop",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic Zm9v",
            "TE": "trailers",
            "Upgrade": "websocket",
            "X-Custom": "kept",
        },
    )
    after = int(time.time() * 1000)
    assert status == 200
    h = echo(body)["h"]
    assert h["x-request-id"] == good_id
    assert headers["X-Request-Id"] == good_id
    assert h["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-port"] == str(router.port)
    assert before <= int(h["x-request-start"]) <= after
    assert h["via"] == "1.0 upstream, 1.1 dynod"
    assert h["x-custom"] == "kept"
    assert h["host"] == "h.localhost"
    for hop in ("x-secret", "keep-alive", "proxy-authorization", "te", "upgrade"):
        assert hop not in h, hop
    # The backend's own hop-by-hop response header does not reach the client.
    assert "Keep-Alive" not in headers
    assert headers["Via"] == "1.1 dynod"

    # Ids that are too short, too long or carry other characters are replaced.
    uuid_re = re.compile(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    )
    for bad in ("short", "x" * 201, "has spaces in it and is long enough"):
        status, headers, body = router.get("h.localhost", headers={"X-Request-Id": bad})
        sent = echo(body)["h"]["x-request-id"]
        assert uuid_re.fullmatch(sent), sent
        assert headers["X-Request-Id"] == sent


def test_keep_alive_reuses_client_and_dyno_connections(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    be = backends("be")
    router.write_routes({"k": app(["k.localhost"], dynos=[be.dyno("web.1")])})
    router.start(workers=1)

    conn = router.connect()
    ports = set()
    for _ in range(5):
        conn.request("GET", "/echo", headers={"Host": "k.localhost"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.headers.get("Connection") != "close"
        ports.add(echo(resp.read())["peer_port"])
    client_sock = conn.sock
    conn.request("GET", "/echo", headers={"Host": "k.localhost"})
    conn.getresponse().read()
    # Same client socket throughout, and one pooled connection to the dyno.
    assert conn.sock is client_sock
    assert len(ports) == 1
    conn.close()


def test_http10_client_gets_no_keep_alive_unless_asked(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    be = backends("be")
    router.write_routes({"o": app(["o.localhost"], dynos=[be.dyno("web.1")])})
    router.start()

    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
        s.sendall(b"GET /echo HTTP/1.0\r\nHost: o.localhost\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    assert b"\r\nConnection: close\r\n" in data


def test_chunked_response_is_streamed(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    be = backends("be")
    router.write_routes({"c": app(["c.localhost"], dynos=[be.dyno("web.1")])})
    router.start()

    conn = router.connect()
    conn.request("GET", "/stream?n=4&gap=0.3", headers={"Host": "c.localhost"})
    resp = conn.getresponse()
    assert resp.headers["Transfer-Encoding"] == "chunked"
    # The first chunk arrives while the dyno is still producing the rest.
    first = resp.readline()
    first_at = time.time()
    rest = resp.read()
    assert first.startswith(b"chunk 0")
    assert time.time() - first_at >= 0.6
    assert rest.count(b"chunk") == 3
    conn.close()


def test_large_upload_is_streamed_to_the_dyno(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    be = backends("be")
    router.write_routes({"u": app(["u.localhost"], dynos=[be.dyno("web.1")])})
    router.start()

    body = os.urandom(10 * 1024 * 1024)
    status, _, data = router.get("u.localhost", "/upload", "POST", body=body)
    assert status == 200
    doc = echo(data)
    assert doc["body_len"] == len(body)
    assert doc["body_sha"] == hashlib.sha256(body).hexdigest()

    # A chunked upload arrives whole, re-chunked by the router.
    def chunks() -> list[bytes]:
        return [body[:1000], body[1000:5000]]

    conn = router.connect()
    headers = {"Host": "u.localhost"}
    conn.request("POST", "/upload", iter(chunks()), headers, encode_chunked=True)
    doc = echo(conn.getresponse().read())
    assert doc["body_len"] == 5000
    assert doc["body_sha"] == hashlib.sha256(body[:5000]).hexdigest()
    conn.close()


def test_head_response_has_no_body_and_connection_stays_usable(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    be = backends("be")
    router.write_routes({"hd": app(["hd.localhost"], dynos=[be.dyno("web.1")])})
    router.start(workers=1)

    conn = router.connect()
    conn.request("HEAD", "/echo", headers={"Host": "hd.localhost"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert int(resp.headers["Content-Length"]) > 0
    assert resp.read() == b""
    conn.request("GET", "/echo", headers={"Host": "hd.localhost"})
    assert echo(conn.getresponse().read())["method"] == "GET"
    conn.close()


def test_health_checks_reach_preboot_dynos_only_with_the_token(
    router: Router, backends: Callable[[str], Backend]
) -> None:
    serving, booting, waiting = backends("serving"), backends("booting"), backends("w")
    token = "0123456789abcdef0123456789abcdef"
    apps = {
        "live": {
            **app(["live.localhost"], dynos=[serving.dyno("web.1")]),
            "preboot": [booting.dyno("web.2")],
        },
        "new": {
            **app(["new.localhost"], "booting"),
            "preboot": [waiting.dyno("web.1")],
        },
    }
    table = {"version": 1, "check_token": token, "apps": apps}
    router.write_routes({}, raw=json.dumps(table).encode())
    router.start()

    def ask(host: str, value: str | None) -> tuple[int, dict[str, Any]]:
        headers = {} if value is None else {"Dynod-Preboot-Check": value}
        status, _, body = router.get(host, "/health", headers=headers)
        return status, echo(body) if status == 200 else {}

    # Ordinary requests, and checks without the token, never reach it.
    for value in (None, "wrong web.2", f"{token}x web.2"):
        for _ in range(5):
            status, seen = ask("live.localhost", value)
            assert (status, seen["backend"]) == (200, "serving")
            relayed = {k.lower() for k, _ in seen["headers"]}
            assert "dynod-preboot-check" not in relayed

    # With the token: the named dyno, booting or serving, and nothing else.
    for name, backend in (("web.2", "booting"), ("web.1", "serving")):
        for _ in range(5):
            status, seen = ask("live.localhost", f"{token} {name}")
            assert (status, seen["backend"]) == (200, backend)
            assert "dynod-preboot-check" not in {k.lower() for k, _ in seen["headers"]}

    # An app still booting answers a check at once rather than holding it.
    started = time.monotonic()
    status, seen = ask("new.localhost", f"{token} web.1")
    assert (status, seen["backend"]) == (200, "w")
    assert time.monotonic() - started < 2
