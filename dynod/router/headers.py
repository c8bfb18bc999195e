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
import struct
from dataclasses import dataclass

_REQUEST_ID_RE = re.compile(rb"[A-Za-z0-9+/=-]{20,200}")
_VIA = b"1.1 dynod"
# Why a request with an ``Expect`` other than ``100-continue`` is refused.
EXPECT_UNSUPPORTED = "unsupported expect header value"


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
    # The header lines relayed as they came, each ending in CRLF.
    kept: bytes = b""
    # Any Content-Length or Transfer-Encoding at all; any Upgrade; the
    # Connection tokens ``close`` and ``keep-alive``.
    framed: bool = False
    upgrade: bool = False
    # The protocol asked for with ``Upgrade`` and ``Connection: upgrade``.
    upgrade_to: bytes = b""
    close: bool = False
    keep_alive: bool = False
    # ``Dynod-Preboot-Check: TOKEN DYNO``: dynod asking one booting dyno.
    check: bytes | None = None


# Every request header line the router reads, replaces or drops, matched in the
# lower-cased head.  A field name is followed directly by its colon (RFC 9112
# §5.1; the parser rejects whitespace there), so ``\r\nname:`` cannot match
# a longer name or the middle of a value.
_REQUEST_LINE_RE = re.compile(
    rb"\r\n(host|content-length|transfer-encoding|connection|expect|via"
    rb"|x-forwarded-for|x-forwarded-proto|x-forwarded-port|x-request-start"
    rb"|x-request-id|keep-alive|te|trailer|upgrade|proxy-[^:\r]*"
    rb"|dynod-preboot-check):[ \t]*"
    rb"([^\r]*)(?=\r\n)"
)
# The value group above is greedy and its trailing whitespace is stripped after
# the match: a lazy group followed by ``[ \t]*(?=\r\n)`` would try the rest of
# the pattern at every byte of every value, a third of the search's time.
_OWS = b" \t"


def scan_request_head(head: bytes) -> RequestInfo:
    """Sort a request's header lines into kept, replaced and refused ones.

    ``head`` runs from the request line through the CRLF that ends the last
    header line, as the parser accepted it.  Lines are relayed byte for byte;
    only the ones the router acts on are cut out.
    """
    info = RequestInfo()
    low = head.lower()
    hosts = 0
    lengths: set[bytes] = set()
    tokens: set[bytes] = set()
    cuts: list[tuple[int, int]] = []
    upgrade = b""
    for m in _REQUEST_LINE_RE.finditer(low):
        name, value = m.groups()
        start, stop = m.span()
        cuts.append((start + 2, stop + 2))
        # ``value`` is lower-cased; ``raw`` (where needed) is the value as sent;
        # either is stripped of trailing whitespace where it matters.
        if name == b"host":
            hosts += 1
            info.raw_host = head[m.start(2) : stop].rstrip(_OWS)
            info.host = _host_of(value.rstrip(_OWS))
        elif name == b"content-length":
            lengths.add(value.rstrip(_OWS))
            info.framed = True
        elif name == b"transfer-encoding":
            info.chunked = info.chunked or b"chunked" in value
            info.framed = True
        elif name == b"connection":
            for token in value.split(b","):
                tokens.add(token.strip(_OWS))
        elif name == b"upgrade":
            info.upgrade = True
            upgrade = head[m.start(2) : stop].rstrip(_OWS)
        elif name == b"expect":
            if value.rstrip(_OWS) == b"100-continue":
                info.expect_continue = True
            else:
                info.bad = EXPECT_UNSUPPORTED
        else:
            raw = head[m.start(2) : stop].rstrip(_OWS)
            if name == b"x-forwarded-for":
                fwd = info.forwarded_for
                info.forwarded_for = raw if fwd is None else fwd + b", " + raw
            elif name == b"x-request-id":
                if _REQUEST_ID_RE.fullmatch(raw):
                    info.request_id = raw
            elif name == b"via":
                info.via = raw if info.via is None else info.via + b", " + raw
            elif name == b"dynod-preboot-check":
                info.check = raw
    if tokens:
        info.close = b"close" in tokens
        info.keep_alive = b"keep-alive" in tokens
        if b"upgrade" in tokens:
            info.upgrade = True
            info.upgrade_to = upgrade
        tokens -= _PLAIN_TOKENS
    info.kept = _cut(head, head.find(b"\r\n") + 2, cuts, tokens)

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
    return info


_PLAIN_TOKENS = frozenset({b"keep-alive", b"close", b"upgrade", b""})

# What a request or response head must look like to skip the full parser: a
# strict RFC 9112 request line, and header lines of a token, a colon and a
# value of visible characters, spaces and tabs.  Anything else, including
# anything merely unusual, goes through the parser, which has the last word.
# The quantifiers are possessive (``*+``): no character class overlaps what
# follows it, so giving characters back could never find another match, and
# not keeping the state to backtrack saves a sixth of the time of the check.
QUICK_REQUEST_LINE = re.compile(
    rb"([!#$%&'*+.^_`|~0-9A-Za-z-]{1,127}+) ([!-~]{1,8192}+) HTTP/1\.([01])"
)
QUICK_FIELDS = re.compile(
    rb"(?:\r\n[!#$%&'*+.^_`|~0-9A-Za-z-]{1,1000}+:[\t\x20-\x7e\x80-\xff]*+)*+\r\n"
)


def _cut(
    head: bytes, begin: int, cuts: list[tuple[int, int]], tokens: set[bytes]
) -> bytes:
    """The header lines of ``head`` from ``begin`` on, minus the ``cuts`` spans
    and minus any header that ``Connection`` named (``tokens``)."""
    if not cuts:
        kept = head[begin:]
    elif len(cuts) == 1:
        # The common case (a request's Host line; a response's Connection
        # line) without a list and a loop: this runs twice per request.
        start, stop = cuts[0]
        kept = head[begin:start] + head[stop:]
    else:
        parts = []
        at = begin
        for start, stop in cuts:
            parts.append(head[at:start])
            at = stop
        parts.append(head[at:])
        kept = b"".join(parts)
    if tokens:
        # RFC 9110 §7.6.1: headers named in Connection are hop-by-hop too.
        lines = kept.split(b"\r\n")
        kept = b"".join(
            line + b"\r\n"
            for line in lines
            if line and line.split(b":", 1)[0].lower() not in tokens
        )
    return kept


# RFC 9562 §5.4: version 4 in bits 48-51 and variant 0b10 in bits 64-65 of a
# UUID, counted from its most significant bit: clear them, then set them.
_UUID_MASK = ~(0xF << 76 | 0x3 << 62)
_UUID_BITS = 0x4 << 76 | 0x2 << 62
# The hex digits cut into the 8-4-4-4-12 groups in one C call: half the cost
# of five slices and a format.
_UUID_GROUPS = struct.Struct("8s4s4s4s12s").unpack


def new_request_id() -> bytes:
    """A random UUID4, as bytes.

    Request ids need to be unique, not unpredictable, so they come from the
    process's PRNG instead of a syscall per request.
    """
    h = b"%032x" % (random.getrandbits(128) & _UUID_MASK | _UUID_BITS)
    return b"-".join(_UUID_GROUPS(h))


def _host_of(value: bytes) -> str:
    """``Host`` lower-cased with any port removed (``value`` is lower-case)."""
    known = _HOSTS.get(value)
    if known is not None:
        return known
    if len(_HOSTS) >= _HOSTS_KEPT:
        _HOSTS.clear()
    host = _HOSTS[value] = _parse_host(value)
    return host


# Host values seen lately -> the host they name; a client sending ever new
# values only makes the cache start over.
_HOSTS: dict[bytes, str] = {}
_HOSTS_KEPT = 4096


def _parse_host(value: bytes) -> str:
    host = value.strip()
    name, colon, port = host.rpartition(b":")
    if colon and port.isdigit():
        host = name
    return host.decode("latin-1")


def upstream_head(
    method: bytes,
    url: bytes,
    info: RequestInfo,
    client_ip: bytes,
    port_line: bytes,
    start_ms: int,
) -> tuple[bytes, bytes]:
    """The request head sent to the dyno, and the ``X-Forwarded-For`` it carries.

    ``port_line`` holds the listener's ``X-Forwarded-Proto`` and
    ``X-Forwarded-Port`` lines.
    """
    fwd = (
        client_ip
        if info.forwarded_for is None
        else info.forwarded_for + b", " + client_ip
    )
    via = _VIA if info.via is None else info.via + b", " + _VIA
    if info.chunked:
        framing = b"Transfer-Encoding: chunked\r\n"
    elif info.content_length is not None:
        framing = b"Content-Length: %d\r\n" % info.content_length
    else:
        framing = b""
    if info.upgrade_to:
        # RFC 9110 §7.8: the upgrade is between client and dyno, so it travels.
        framing += b"Connection: Upgrade\r\nUpgrade: %s\r\n" % info.upgrade_to
    head = (
        b"%s %s HTTP/1.1\r\nHost: %s\r\n%s%sX-Forwarded-For: %s\r\n"
        b"%sX-Request-Start: %d\r\n"
        b"X-Request-Id: %s\r\nVia: %s\r\n\r\n"
        % (
            method, url, info.raw_host, info.kept, framing, fwd,
            port_line, start_ms, info.request_id, via,
        )
    )  # fmt: skip
    return head, fwd


# Response header lines the router reads or drops, as for requests above.
_RESPONSE_LINE_RE = re.compile(
    rb"\r\n(content-length|transfer-encoding|connection|x-request-id|keep-alive"
    rb"|te|trailer|upgrade|proxy-[^:\r]*):[ \t]*([^\r]*)(?=\r\n)"
)


def upgrade_of(head: bytes) -> bytes:
    """The ``Upgrade`` value of a response head (of a 101), as sent."""
    at = head.lower().find(b"\r\nupgrade:")
    if at < 0:
        return b""
    end = head.find(b"\r\n", at + 2)
    return head[at + 10 : end].strip(_OWS)


class BadResponse(ValueError):
    """A dyno's response head the router will not relay (H25)."""


def scan_response_head(
    head: bytes,
) -> tuple[bytes, int | None, bool, bool, bool]:
    """Sort a dyno's response head into what the client gets and its framing.

    ``head`` runs from the status line through the CRLF ending the last
    header line.  Returns the kept header lines (``Content-Length`` among them
    when it frames the body), the declared length, whether the body is
    chunked, whether the dyno set ``X-Request-Id``, and whether it said
    ``Connection: close``.  Raises
    :class:`BadResponse` for an invalid or conflicting ``Content-Length``.
    """
    low = head.lower()
    length: int | None = None
    length_cuts: list[tuple[int, int]] = []
    chunked = has_id = False
    tokens: set[bytes] = set()
    cuts: list[tuple[int, int]] = []
    for m in _RESPONSE_LINE_RE.finditer(low):
        name, value = m.groups()
        start, stop = m.span()
        span = (start + 2, stop + 2)
        if name == b"content-length":
            value = value.rstrip(_OWS)
            if not value.isdigit() or (length is not None and int(value) != length):
                raise BadResponse(f"invalid content length {value!r}")
            if length is not None:
                cuts.append(span)
            length = int(value)
            length_cuts.append(span)
            continue
        if name == b"x-request-id":
            has_id = True
            continue
        if name == b"transfer-encoding":
            chunked = chunked or b"chunked" in value
        elif name == b"connection":
            for token in value.split(b","):
                tokens.add(token.strip(_OWS))
        cuts.append(span)
    if chunked and length_cuts:
        # RFC 9112 §6.3: chunked framing wins, and the length must not travel.
        cuts = sorted(set(cuts) | set(length_cuts))
        length = None
    close = b"close" in tokens
    tokens -= _PLAIN_TOKENS
    kept = _cut(head, head.find(b"\r\n") + 2, cuts, tokens)
    return kept, length, chunked, has_id, close
