"""Request and response header rewriting, request ids, log lines, error pages."""

from __future__ import annotations

import re
import uuid

import pytest

from dynod.router.hcodes import HCODES, Level, page_for, render_response
from dynod.router.headers import (
    BadResponse,
    RequestInfo,
    new_request_id,
    scan_request_head,
    scan_response_head,
    upstream_head,
)
from dynod.router.logline import LogSender, format_line

H = list[tuple[bytes, bytes]]


def _raw(first: bytes, headers: H) -> bytes:
    """A head as the parser accepted it: first line, then CRLF-ended lines."""
    return first + b"\r\n" + b"".join(b"%s: %s\r\n" % h for h in headers)


def scan_request(headers: H) -> RequestInfo:
    return scan_request_head(_raw(b"GET / HTTP/1.1", headers))


def scan_response(headers: H) -> tuple[bytes, int | None, bool, bool, bool]:
    return scan_response_head(_raw(b"HTTP/1.1 200 OK", headers))


def _head(headers: H, client: bytes = b"192.0.2.1") -> bytes:
    info = scan_request(headers)
    head, _ = upstream_head(
        b"GET", b"/p?q=1", info, client_ip=client,
        port_line=b"X-Forwarded-Proto: http\r\nX-Forwarded-Port: 80\r\n",
        start_ms=1234,
    )  # fmt: skip
    return head


def test_router_headers_are_set_and_hop_by_hop_ones_dropped() -> None:
    head = _head(
        [
            (b"Host", b"App.Localhost:8080"),
            (b"Connection", b"keep-alive, X-Private"),
            (b"X-Private", b"secret"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Proxy-Authorization", b"Basic x"),
            (b"Proxy-Anything", b"x"),
            (b"TE", b"trailers"),
            (b"Upgrade", b"websocket"),
            (b"X-Forwarded-Proto", b"https"),
            (b"X-Forwarded-For", b"198.51.100.1"),
            (b"Via", b"1.0 cdn"),
            (b"Accept", b"*/*"),
        ]
    )
    lines = head.split(b"\r\n")
    assert lines[0] == b"GET /p?q=1 HTTP/1.1"
    assert b"Host: App.Localhost:8080" in lines
    assert b"Accept: */*" in lines
    assert b"X-Forwarded-For: 198.51.100.1, 192.0.2.1" in lines
    assert b"X-Forwarded-Proto: http" in lines
    assert b"X-Forwarded-Port: 80" in lines
    assert b"X-Request-Start: 1234" in lines
    assert b"Via: 1.0 cdn, 1.1 dynod" in lines
    for gone in (
        b"connection",
        b"x-private",
        b"keep-alive",
        b"proxy-",
        b"te:",
        b"upgrade",
    ):
        assert gone not in head.lower().replace(b"x-forwarded", b""), gone
    assert head.endswith(b"\r\n\r\n")


def test_health_check_header_is_read_and_never_relayed() -> None:
    headers = [(b"Host", b"a.localhost"), (b"Dynod-Preboot-Check", b"tok web.1")]
    assert scan_request(headers).check == b"tok web.1"
    assert b"preboot" not in _head(headers).lower()
    assert scan_request([(b"Host", b"a.localhost")]).check is None


def test_host_is_normalised_for_routing() -> None:
    assert scan_request([(b"Host", b"App.Localhost:8080")]).host == "app.localhost"
    assert scan_request([(b"host", b"a.test")]).host == "a.test"


@pytest.mark.parametrize(
    ("headers", "cause"),
    [
        ([], "missing host"),
        ([(b"Host", b"a"), (b"Host", b"b")], "multiple host headers"),
        ([(b"Host", b"a"), (b"Content-Length", b"3"), (b"Content-Length", b"4")],
         "conflicting content-length"),
        ([(b"Host", b"a"), (b"Expect", b"other")], "unsupported expect header value"),
    ],
)  # fmt: skip
def test_ambiguous_requests_are_refused(headers: H, cause: str) -> None:
    assert scan_request(headers).bad == cause


def test_framing_is_redeclared() -> None:
    chunked = _head([(b"Host", b"a"), (b"Transfer-Encoding", b"chunked"),
                     (b"Content-Length", b"10")])  # fmt: skip
    assert b"Transfer-Encoding: chunked\r\n" in chunked
    assert b"Content-Length" not in chunked
    fixed = _head(
        [(b"Host", b"a"), (b"Content-Length", b"10"), (b"Content-Length", b"10")]
    )
    assert fixed.count(b"Content-Length: 10\r\n") == 1


def test_request_ids_are_kept_only_when_well_formed() -> None:
    ok = b"A" * 20
    assert scan_request([(b"Host", b"a"), (b"X-Request-Id", ok)]).request_id == ok
    assert (
        scan_request([(b"Host", b"a"), (b"X-Request-Id", b"A" * 200)]).request_id
        == b"A" * 200
    )
    for bad in (b"A" * 19, b"A" * 201, b"A" * 19 + b"!", b"a b" * 10):
        rid = scan_request([(b"Host", b"a"), (b"X-Request-Id", bad)]).request_id
        assert rid != bad
        assert uuid.UUID(rid.decode()).version == 4


def test_new_request_ids_are_uuid4_and_distinct() -> None:
    ids = {new_request_id() for _ in range(2000)}
    assert len(ids) == 2000
    for rid in list(ids)[:50]:
        u = uuid.UUID(rid.decode())
        assert (u.version, u.variant, str(u)) == (4, uuid.RFC_4122, rid.decode())


def test_response_headers_lose_hop_by_hop_and_keep_their_length() -> None:
    kept, length, chunked, has_id, close = scan_response(
        [
            (b"Content-Type", b"text/plain"),
            (b"Content-Length", b"12"),
            (b"Connection", b"close, X-Gone"),
            (b"X-Gone", b"1"),
            (b"Keep-Alive", b"timeout=5"),
            (b"X-Request-Id", b"abc"),
        ]
    )
    assert kept == (
        b"Content-Type: text/plain\r\nContent-Length: 12\r\nX-Request-Id: abc\r\n"
    )
    assert (length, chunked, has_id, close) == (12, False, True, True)
    # Chunked framing wins over a length, which then does not travel.
    kept, length, chunked, _, _ = scan_response(
        [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"5")]
    )
    assert (kept, length, chunked) == (b"", None, True)
    # Equal duplicate lengths are merged; a conflicting or bad one is refused.
    kept, length, _, _, _ = scan_response(
        [(b"Content-Length", b"5"), (b"Content-Length", b"5")]
    )
    assert (kept, length) == (b"Content-Length: 5\r\n", 5)
    for bad in ([b"5", b"6"], [b"-1"], [b"0x10"]):
        with pytest.raises(BadResponse):
            scan_response([(b"Content-Length", v) for v in bad])


def test_header_names_match_whole_and_values_keep_their_case() -> None:
    info = scan_request(
        [
            (b"Host", b"a"),
            (b"Hostname", b"kept"),
            (b"Teapot", b"kept"),
            (b"X-Via", b"kept"),
            (b"X-Note", b"Host: evil"),
            (b"X-Forwarded-For", b"AbC"),
        ]
    )
    assert info.kept == (
        b"Hostname: kept\r\nTeapot: kept\r\nX-Via: kept\r\nX-Note: Host: evil\r\n"
    )
    assert (info.host, info.forwarded_for) == ("a", b"AbC")


def test_log_line_has_herokus_fields_in_order() -> None:
    line = format_line(
        method="GET",
        path='/a"b',
        host="app.localhost",
        request_id="rid",
        fwd="127.0.0.1",
        dyno="web.1",
        connect_ms=1,
        service_ms=18,
        status=200,
        nbytes=13,
    )
    assert line == (
        'at=info method=GET path="/a%22b" host=app.localhost request_id=rid '
        'fwd="127.0.0.1" dyno=web.1 connect=1ms service=18ms status=200 bytes=13 '
        "protocol=http"
    )
    err = format_line(
        method="GET", path="/", host="h", request_id="r", fwd="f", dyno="",
        connect_ms=None, service_ms=None, status=503, nbytes=0, code=HCODES["H14"],
    )  # fmt: skip
    assert err.startswith(
        'at=error code=H14 desc="No web processes running" method=GET'
    )
    assert "dyno= connect= service= status=503" in err
    tls = format_line(
        method="GET", path="/", host="h", request_id="r", fwd="f", dyno="web.1",
        connect_ms=0, service_ms=2, status=200, nbytes=0, protocol="https",
    )  # fmt: skip
    assert tls.endswith(" bytes=0 protocol=https")


def test_h_code_table_statuses_and_levels() -> None:
    assert all(c == h.code and re.fullmatch(r"H\d\d", c) for c, h in HCODES.items())
    assert {
        HCODES[c].status for c in ("H10", "H12", "H13", "H14", "H19", "H20", "H21")
    } == {503}
    assert (HCODES["H26"].status, HCODES["H27"].status) == (400, 499)
    assert HCODES["H80"].level is Level.INFO and HCODES["H81"].level is Level.INFO
    assert b"maintenance" in page_for(HCODES["H80"])


def test_error_response_is_complete_http() -> None:
    raw = render_response(503, b"page", "rid", keep_alive=False)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Content-Length: 4" in head and b"X-Request-Id: rid" in head
    assert b"Connection: close" in head
    assert body == b"page"


def test_log_sender_never_raises_without_a_listener() -> None:
    sender = LogSender("/nonexistent/dir/logs.sock")
    sender.send("app", b"line")
    sender.close()
