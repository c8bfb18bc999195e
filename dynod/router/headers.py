"""What the router adds to and strips from the headers it relays.

To the dyno (RFC 9110 §7.6.1 hop-by-hop headers removed, including any header
named in ``Connection``; framing re-declared by the router):

- ``X-Forwarded-For``: the client's address appended to any incoming value;
- ``X-Forwarded-Proto``, ``X-Forwarded-Port``: the router's own, never the
  client's (incoming ``X-Forwarded-*`` is untrusted);
- ``X-Request-Start``: milliseconds since the epoch when the request arrived;
- ``X-Request-Id``: the client's, if it is 20-200 characters of
  ``[A-Za-z0-9+/=-]``, else a new UUID4 (also returned to the client);
- ``Via: 1.1 dynod`` appended to any incoming ``Via``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Request headers the router sets itself, reading the incoming value first.
_REPLACED = frozenset(
    {
        b"host",
        b"content-length",
        b"expect",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-port",
        b"x-request-start",
        b"x-request-id",
        b"via",
    }
)
_REQUEST_ID_RE = re.compile(rb"[A-Za-z0-9+/=-]{20,200}")
_VIA = b"1.1 dynod"

Header = tuple[bytes, bytes]


@dataclass(slots=True)
class RequestInfo:
    """The facts about a request's headers that routing and relaying need."""

    host: str = ""
    raw_host: bytes = b""
    request_id: bytes = b""
    # Set when the request must be refused with H26; says why, for the log.
    bad: str | None = None
    chunked: bool = False
    content_length: int | None = None
    expect_continue: bool = False
    forwarded_for: bytes | None = None
    via: bytes | None = None
    kept: list[Header] = field(default_factory=list)
    connection_tokens: frozenset[bytes] = frozenset()


def scan_request(headers: list[Header]) -> RequestInfo:
    """Sort a request's headers into what is kept, replaced and refused."""
    info = RequestInfo()
    hosts = 0
    lengths: set[bytes] = set()
    kept = info.kept
    tokens: set[bytes] = set()
    for name, value in headers:
        lname = name.lower()
        if lname not in _REPLACED and lname not in HOP_BY_HOP:
            if not lname.startswith(b"proxy-"):
                kept.append((name, value))
            continue
        if lname == b"host":
            hosts += 1
            info.raw_host = value
            info.host = _host_of(value)
        elif lname == b"content-length":
            lengths.add(value.strip())
        elif lname == b"transfer-encoding":
            info.chunked = info.chunked or b"chunked" in value.lower()
        elif lname == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
        elif lname == b"expect":
            if value.strip().lower() == b"100-continue":
                info.expect_continue = True
            else:
                info.bad = "unsupported expect header value"
        elif lname == b"x-forwarded-for":
            info.forwarded_for = (
                value
                if info.forwarded_for is None
                else info.forwarded_for + b", " + value
            )
        elif lname == b"x-request-id":
            if _REQUEST_ID_RE.fullmatch(value):
                info.request_id = value
        elif lname == b"via":
            info.via = value if info.via is None else info.via + b", " + value

    # Ambiguous routing or framing is refused rather than guessed at.
    if hosts != 1:
        info.bad = info.bad or (
            "missing host" if hosts == 0 else "multiple host headers"
        )
    if len(lengths) > 1:
        info.bad = info.bad or "conflicting content-length"
    elif lengths and not info.chunked:
        raw = lengths.pop()
        if not raw.isdigit():
            info.bad = info.bad or "bad content-length"
        else:
            info.content_length = int(raw)
    if not info.request_id:
        info.request_id = new_request_id()
    tokens -= {b"keep-alive", b"close", b"upgrade", b""}
    if tokens:
        info.connection_tokens = frozenset(tokens)
    return info


def new_request_id() -> bytes:
    """A random UUID4, as bytes.

    Request ids need to be unique, not unpredictable, so they come from the
    process's PRNG instead of a syscall per request.
    """
    n = (random.getrandbits(128) & ~(0xF000 << 64) | (0x4000 << 64)) & ~(
        0xC000 << 48
    ) | (0x8000 << 48)
    h = b"%032x" % n
    return b"%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def _host_of(value: bytes) -> str:
    """``Host`` lower-cased with any port removed."""
    host = value.strip().lower()
    name, colon, port = host.rpartition(b":")
    if colon and port.isdigit():
        host = name
    return host.decode("latin-1")


def upstream_head(
    method: bytes,
    url: bytes,
    info: RequestInfo,
    *,
    client_ip: bytes,
    port_line: bytes,
    start_ms: int,
) -> tuple[bytes, bytes]:
    """The request head sent to the dyno, and the ``X-Forwarded-For`` it carries."""
    fwd = (
        client_ip
        if info.forwarded_for is None
        else info.forwarded_for + b", " + client_ip
    )
    via = _VIA if info.via is None else info.via + b", " + _VIA
    parts = [b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, url, info.raw_host)]
    drop = info.connection_tokens
    for name, value in info.kept:
        if drop and name.lower() in drop:
            continue
        parts.append(b"%s: %s\r\n" % (name, value))
    if info.chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    elif info.content_length is not None:
        parts.append(b"Content-Length: %d\r\n" % info.content_length)
    parts.append(
        b"X-Forwarded-For: %s\r\nX-Forwarded-Proto: http\r\n%s"
        b"X-Request-Start: %d\r\nX-Request-Id: %s\r\nVia: %s\r\n\r\n"
        % (fwd, port_line, start_ms, info.request_id, via)
    )
    return b"".join(parts), fwd


@dataclass(slots=True)
class ResponseInfo:
    kept: list[bytes]
    content_length: int | None
    chunked: bool
    has_request_id: bool


def scan_response(headers: list[Header]) -> ResponseInfo:
    """Sort a dyno's response headers into kept lines and framing facts."""
    kept: list[bytes] = []
    length: int | None = None
    chunked = False
    has_id = False
    tokens: set[bytes] = set()
    for name, value in headers:
        lname = name.lower()
        if lname == b"content-length":
            if value.strip().isdigit():
                length = int(value)
            continue
        if lname in HOP_BY_HOP or lname.startswith(b"proxy-"):
            if lname == b"transfer-encoding":
                chunked = chunked or b"chunked" in value.lower()
            elif lname == b"connection":
                tokens.update(t.strip().lower() for t in value.split(b","))
            continue
        if lname == b"x-request-id":
            has_id = True
        kept.append(b"%s: %s\r\n" % (name, value))
    tokens -= {b"keep-alive", b"close", b"upgrade", b""}
    if tokens:
        kept = [line for line in kept if line.split(b":", 1)[0].lower() not in tokens]
    return ResponseInfo(kept, None if chunked else length, chunked, has_id)
