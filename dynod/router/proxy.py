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
from typing import cast

import httptools
import structlog

from dynod.router.context import WorkerContext
from dynod.router.exchange import Exchange
from dynod.router.hcodes import HCODES, page_for, render_response
from dynod.router.headers import scan_request

log = structlog.get_logger("dynod.router")

_READ_BLOCK_PIPELINE = 2


class ProxyConnection(asyncio.Protocol):
    """The router's side of one client's TCP connection."""

    __slots__ = (
        "_active", "_closing", "_corked", "_headers", "_out", "_parser", "_queue",
        "_read_blocks", "_receiving", "_url", "_write_paused", "client_ip", "ctx",
        "last_active", "transport",
    )  # fmt: skip

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.transport: asyncio.Transport | None = None
        self.client_ip = b""
        self.last_active = 0.0
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._active: Exchange | None = None
        self._receiving: Exchange | None = None
        self._queue: deque[Exchange] = deque()
        self._read_blocks = 0
        self._write_paused = False
        self._closing = False
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
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # The Upgrade header was stripped, so the request went out as a plain
            # one; parse whatever follows it with a fresh parser.
            self._parser = httptools.HttpRequestParser(self)
            rest = data[exc.args[0] :]
            if rest:
                self.data_received(rest)
        except httptools.HttpParserError as exc:
            self._malformed(str(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self.ctx.connections.discard(self)
        if self._active is not None:
            self._active.client_gone()
            self._active = None
        self._queue.clear()

    def pause_writing(self) -> None:
        self._write_paused = True
        ex = self._active
        if ex is not None and ex.upstream is not None:
            ex.upstream.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        ex = self._active
        if ex is not None and ex.upstream is not None:
            ex.upstream.resume_reading()

    # -- parser callbacks ------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._closing:
            return
        parser = self._parser
        ex = Exchange(
            self,
            parser.get_method(),
            self._url,
            scan_request(self._headers),
            parser.get_http_version() == "1.0",
            parser.should_keep_alive(),
        )
        self._receiving = ex
        if self._active is None:
            self._active = ex
            ex.begin()
        else:
            self._queue.append(ex)
            self.block_reading(_READ_BLOCK_PIPELINE)

    def on_body(self, data: bytes) -> None:
        if self._receiving is not None:
            self._receiving.on_request_body(data)

    def on_message_complete(self) -> None:
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

    def cork(self) -> None:
        """Hold writes until :meth:`uncork`: a response head and body that the
        dyno sent together then reach the client in one send."""
        self._corked = True

    def uncork(self) -> None:
        self._corked = False
        if self._out:
            out, self._out = self._out, []
            self.write(out[0] if len(out) == 1 else b"".join(out))

    def exchange_finished(self, ex: Exchange, keep_alive: bool) -> None:
        """``ex`` has ended; close, or serve the next request in line."""
        if self._active is not ex:
            return
        self._active = None
        self.last_active = self.ctx.loop.time()
        if not keep_alive or self.ctx.draining:
            self.close()
            return
        if self._queue:
            nxt = self._queue.popleft()
            if not self._queue:
                self.unblock_reading(_READ_BLOCK_PIPELINE)
            self._active = nxt
            nxt.begin()

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

    @property
    def idle(self) -> bool:
        """No request in progress on this connection."""
        return self._active is None and self._receiving is None

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
            ex.fail(HCODES["H26"])
        else:
            code = HCODES["H26"]
            self.write(render_response(400, page_for(code), None, False))
        self.close()
