"""One client connection: HTTP/1.x parsing, keep-alive, pipelining, flow control.

Requests are served strictly in order.  A pipelined request that arrives while
another is being served waits in a queue (its body buffered by its exchange)
and the connection stops reading until the queue drains, so a client cannot
make the router buffer without bound.

Reading from the client is paused for any of several reasons at once (a full
dyno socket during an upload, a pipeline queue, a body held while no dyno is
ready), kept as bits so one reason ending does not resume reading that another
still needs paused.  Writing works the other way: when the client's socket
buffer fills, reading from the dyno pauses until it drains.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import ClassVar, cast

import httptools
import structlog

from dynod.router.context import WorkerContext
from dynod.router.exchange import Exchange
from dynod.router.hcodes import HCODES, page_for, render_response
from dynod.router.headers import (
    QUICK_FIELDS,
    QUICK_REQUEST_LINE,
    scan_request_head,
)

log = structlog.get_logger("dynod.router")

_READ_BLOCK_PIPELINE = 2
# Request line and each header line, header name, and header count (Heroku's
# limits); the whole head is also capped, so 1000 long lines cannot make a
# connection hold megabytes.
_MAX_LINE = 8192
_MAX_NAME = 1000
_MAX_HEADERS = 1000
_MAX_HEAD = 128 * 1024


class _Refused(Exception):
    """A request head passed one of the router's limits (H26)."""


class ProxyConnection(asyncio.Protocol):
    """The router's side of one client's TCP connection."""

    # The scheme the log line names (see dynod.router.logline).
    protocol: ClassVar[bytes] = b"http"

    __slots__ = (
        "_active", "_between", "_closing", "_corked", "_count", "_eof", "_head",
        "_last", "_out", "_parser", "_queue", "_read_blocks", "_receiving",
        "_tunnel", "_url", "client_ip", "ctx", "forwarded", "last_active",
        "transport", "write_paused",
    )  # fmt: skip

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.transport: asyncio.Transport | None = None
        self.client_ip = b""
        # X-Forwarded-Proto and -Port lines for this listener.
        self.forwarded = ctx.port_line
        self.last_active = 0.0
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        # The parser is between messages: a read may skip it (``_quick``).
        self._between = True
        # The header lines received so far, each led by CRLF, and their count.
        self._head = b""
        self._count = 0
        self._active: Exchange | None = None
        self._receiving: Exchange | None = None
        # The last request parsed, and the one whose upgrade owns the stream.
        self._last: Exchange | None = None
        self._tunnel: Exchange | None = None
        self._queue: deque[Exchange] = deque()
        self._read_blocks = 0
        # The client's socket is full: dynos are not read until it drains.
        self.write_paused = False
        self._closing = False
        self._eof = False
        # While corked, writes collect here and go out as one send on uncork.
        self._corked = False
        self._out: list[bytes] = []

    # -- transport events ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement, but do not subclass, asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0].encode() if peer else b""
        self.last_active = self.ctx.loop.time()
        self.ctx.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self._tunnel is not None:
            self._tunnel.from_client(data)
            return
        if self._between and data.endswith(b"\r\n\r\n") and self._quick(data):
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            rest = data[exc.args[0] :]
            ex = self._last
            if ex is not None and ex.info.upgrade_to and not ex.done:
                # What follows is in the protocol asked for; its exchange relays
                # it once the dyno agrees.
                self._tunnel = ex
                if rest:
                    ex.from_client(rest)
                return
            # No upgrade is under way (CONNECT, or the request already ended):
            # parse whatever follows with a fresh parser.
            self._parser = httptools.HttpRequestParser(self)
            self._between = True
            if rest:
                self.data_received(rest)
        except httptools.HttpParserError as exc:
            self._malformed(str(exc))

    def _quick(self, data: bytes) -> bool:
        """Serve ``data`` if it is exactly one plain request without a body.

        Most requests are one read holding a bodiless GET: checking that with
        two regular expressions is cheaper than the parser's callbacks.
        Returns False, having done nothing, for anything else.
        """
        eol = data.find(b"\r\n")
        line = QUICK_REQUEST_LINE.fullmatch(data, 0, eol)
        # Within every limit by construction: no line can be longer than the
        # whole, and the header count is checked the cheap way.
        if line is None or len(data) > _MAX_LINE:
            return False
        if len(data) > 4 * _MAX_HEADERS and data.count(b"\n") > _MAX_HEADERS + 2:
            return False
        head = data[eol:-2]
        if QUICK_FIELDS.fullmatch(head) is None:
            return False
        info = scan_request_head(head)
        if info.framed or info.upgrade or info.bad is not None:
            return False
        method, url, minor = line.groups()
        http10 = minor == b"0"
        keep = info.keep_alive if http10 else not info.close
        now = self.last_active = self.ctx.loop.time()
        ex = Exchange(self, method, url, info, http10, keep, now)
        ex.request_done = True
        if self._active is None:
            self._active = ex
            ex.begin(now)
        else:
            self._queue.append(ex)
            self.block_reading(_READ_BLOCK_PIPELINE)
        return True

    def eof_received(self) -> bool:
        """The client half-closed: answer what it asked for whole, then close.

        RFC 9112 §9.6 lets a client close its sending side and still read the
        response; a request cut short by the close is abandoned (H27).
        """
        self._eof = True
        if self._tunnel is not None:
            # An upgraded connection ends as a whole when either side closes.
            return False
        return self._active is not None and self._receiving is None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self.ctx.connections.discard(self)
        if self._active is not None:
            self._active.client_gone()
            self._active = None
        self._queue.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        ex = self._active
        if ex is not None and ex.upstream is not None:
            ex.upstream.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        ex = self._active
        if ex is not None and ex.upstream is not None:
            ex.upstream.resume_reading()

    # -- parser callbacks ------------------------------------------------------

    def on_message_begin(self) -> None:
        self._between = False
        self.last_active = self.ctx.loop.time()
        self._url = b""
        self._head = b""
        self._count = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > _MAX_LINE:
            raise _Refused("request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        # Raising stops the parser: the client gets 400 before it sends more.
        self._count += 1
        if len(name) > _MAX_NAME or len(name) + len(value) + 2 > _MAX_LINE:
            raise _Refused("header line too long")
        if self._count > _MAX_HEADERS:
            raise _Refused("too many headers")
        self._head += b"\r\n%s: %s" % (name, value)
        if len(self._head) > _MAX_HEAD:
            raise _Refused("request head too large")

    def on_headers_complete(self) -> None:
        if self._closing:
            return
        parser = self._parser
        info = scan_request_head(self._head + b"\r\n")
        now = self.ctx.loop.time()
        ex = Exchange(
            self,
            parser.get_method(),
            self._url,
            info,
            parser.get_http_version() == "1.0",
            parser.should_keep_alive(),
            now,
        )
        self._receiving = self._last = ex
        if self._active is None:
            self._active = ex
            ex.begin(now)
        else:
            self._queue.append(ex)
            self.block_reading(_READ_BLOCK_PIPELINE)

    def on_body(self, data: bytes) -> None:
        if self._receiving is not None:
            self._receiving.on_request_body(data)

    def on_message_complete(self) -> None:
        self._between = True
        ex = self._receiving
        if ex is not None:
            self._receiving = None
            ex.on_request_complete()

    # -- used by exchanges -----------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._corked:
            self._out.append(data)
        elif not self._closing and self.transport is not None:
            self.transport.write(data)

    def write_parts(self, parts: list[bytes]) -> None:
        """:meth:`write` ``b"".join(parts)``, joined only once uncorked."""
        if self._corked:
            self._out += parts
        else:
            self.write(b"".join(parts))

    def cork(self) -> None:
        """Hold writes until :meth:`uncork`: a response head and body that the
        dyno sent together then reach the client in one send."""
        self._corked = True

    def uncork(self) -> None:
        self._corked = False
        out = self._out
        if out:
            # One copy into one send: for a few hundred bytes in a handful of
            # pieces, cheaper than a vectored write (transport.writelines).
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            self.write(data)

    def exchange_finished(self, ex: Exchange, keep_alive: bool, now: float) -> None:
        """``ex`` has ended (at loop time ``now``); close, or serve the next
        request in line."""
        if self._active is not ex:
            return
        self._active = None
        self.last_active = now
        if not keep_alive or self.ctx.draining or (self._eof and not self._queue):
            self.close()
            return
        if self._queue:
            nxt = self._queue.popleft()
            if not self._queue:
                self.unblock_reading(_READ_BLOCK_PIPELINE)
            self._active = nxt
            nxt.begin(now)

    def block_reading(self, reason: int) -> None:
        if not self._read_blocks and self.transport is not None and not self._closing:
            self.transport.pause_reading()
        self._read_blocks |= reason

    def unblock_reading(self, reason: int) -> None:
        was = self._read_blocks
        self._read_blocks &= ~reason
        resume = was and not self._read_blocks and not self._closing
        if resume and self.transport is not None:
            self.transport.resume_reading()

    def check_timeouts(
        self, io_since: float, head_since: float, idle_since: float
    ) -> None:
        """End what has waited too long: the exchange in progress if no byte
        went either way since ``io_since`` (see :meth:`Exchange.check_idle`),
        a request head begun before ``head_since``, or the connection if it
        has been between requests since before ``idle_since``.

        Called for every connection once a second, so it reads its own state
        directly rather than through the properties below.
        """
        if self._active is not None:
            self._active.check_idle(io_since)
        if self._active is None and self._receiving is None:
            in_head = not self._between
            if self.last_active < (head_since if in_head else idle_since):
                self.close()

    @property
    def idle(self) -> bool:
        """No request in progress on this connection."""
        return self._active is None and self._receiving is None

    @property
    def active(self) -> Exchange | None:
        """The exchange being served, if any."""
        return self._active

    @property
    def in_head(self) -> bool:
        """A request head has begun arriving (and ``last_active`` says when)."""
        return not self._between and self._receiving is None

    def close(self) -> None:
        """Close after what was written is flushed."""
        self.uncork()
        self._closing = True
        self._queue.clear()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Cut the connection now: the response cannot be completed."""
        self._out = []
        self._closing = True
        self._queue.clear()
        if self.transport is not None:
            self.transport.abort()

    # -- errors ----------------------------------------------------------------

    def _malformed(self, reason: str) -> None:
        """Answer a request the parser rejected with 400 (H26), then close."""
        log.debug("bad request", reason=reason)
        ex = self._active
        if ex is not None and not ex.done:
            # Past the head, only the chunked framing can be malformed.
            body = self._receiving is not None and self._receiving.info.chunked
            ex.fail(HCODES["H26"], cause="bad chunk" if body else "bad header")
        else:
            code = HCODES["H26"]
            self.write(render_response(400, page_for(code), None, False))
        self.close()
