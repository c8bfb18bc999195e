"""Keep-alive connections to dynos, and the per-dyno pool of idle ones.

An :class:`UpstreamConnection` carries one exchange at a time: the router never
pipelines requests to a dyno.  Between exchanges it waits in the
:class:`UpstreamPool` under the dyno's address; if the dyno closes it (or sends
anything unasked) while it waits, it leaves the pool and is never handed out.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, cast

import httptools

from dynod.router.hcodes import HCODES
from dynod.router.headers import QUICK_FIELDS
from dynod.router.response import MAX_HEAD

if TYPE_CHECKING:
    from dynod.router.exchange import Exchange
    from dynod.router.proxy import ProxyConnection

Key = tuple[str, int]
# The reason bit of a client whose reading waits for a dyno's full socket.
READ_BLOCK_DYNO = 1
# After "HTTP/1.1 ": a final status and a reason phrase (RFC 9112 §4).
_STATUS_LINE = re.compile(rb"[2-5][0-9][0-9] [\t\x20-\x7e\x80-\xff]*+")


class UpstreamConnection(asyncio.Protocol):
    """One TCP connection to a dyno, parsing the responses it sends back."""

    __slots__ = (
        "_head", "_head_only", "_in_head", "_interim", "_parser", "_relayed",
        "_tunnel", "closed", "exchange", "holding", "idle_since", "key", "pool",
        "reading_paused", "transport", "used",
    )  # fmt: skip

    def __init__(self, pool: UpstreamPool, key: Key) -> None:
        self.key = key
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.closed = False
        self.idle_since = 0.0
        self.used = False
        # Set while the client's full socket holds back reading from the dyno.
        self.reading_paused = False
        # The client whose reading this connection's full socket holds back.
        # Kept apart from ``exchange``, which may end first: the block must be
        # lifted however the connection ends.
        self.holding: ProxyConnection | None = None
        self._parser = httptools.HttpResponseParser(self)
        # The bytes of the response head being received: the parser checks
        # the head, and the router relays its lines without re-serialising.
        self._head = b""
        self._in_head = True
        self._interim = False
        # The head of the current response went out before the parser saw it.
        self._relayed = False
        # After a 101: bytes go to the client unparsed.
        self._tunnel = False
        self._head_only = False

    # -- transport events ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement, but do not subclass, asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None:
            # A dyno speaking out of turn cannot be trusted with the next request.
            self.close()
            return
        # Any byte resets the exchange's idle clock; its calls made from this
        # read take their time from it too.
        ex.last_io = ex.proxy.ctx.loop.time()
        if self._tunnel:
            ex.from_dyno(data)
            return
        if not ex.first_byte:
            ex.on_first_byte()
        proxy = ex.proxy
        proxy.cork()
        try:
            if self._in_head:
                if not self._head and self._quick(ex, data):
                    return
                self._head = self._head + data if self._head else data
                head = self._head
                if len(head) > MAX_HEAD and head.find(b"\r\n\r\n", 0, MAX_HEAD) < 0:
                    # A head past Heroku's limit is refused before it grows.
                    ex.fail(HCODES["H25"])
                    return
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # After a 101 the dyno speaks the new protocol: relay it as is.
            if self.exchange is ex and ex.upgraded:
                self._tunnel = True
                rest = data[exc.args[0] :]
                if rest:
                    ex.from_dyno(rest)
            elif self.exchange is ex:
                ex.on_bad_response("upgrade the client did not ask for")
            return
        except httptools.HttpParserError as exc:
            if self.exchange is ex:
                ex.on_bad_response(str(exc))
            return
        finally:
            proxy.uncork()
        if self._head_only:
            # The response to HEAD ended at its headers, whatever they declared.
            self._parser = httptools.HttpResponseParser(self)
            self._head_only = False
            self._in_head = True
            self._head = b""

    def _quick(self, ex: Exchange, data: bytes) -> bool:
        """Relay a plain response head without waiting for the parser.

        The head is checked strictly (HTTP/1.1, a final status with a body,
        header lines of token, colon and visible characters).  If ``data`` is
        also exactly its whole length-framed body, the response is complete
        and the parser never runs; otherwise the parser gets ``data`` as usual
        and only skips relaying the head again.  Returns False, having done
        nothing, when the head is not plain or not complete in ``data``.
        """
        if not data.startswith(b"HTTP/1.1 ") or ex.method == b"HEAD":
            return False
        end = data.find(b"\r\n\r\n")
        eol = data.find(b"\r\n")
        if end < 0 or _STATUS_LINE.fullmatch(data, 9, eol) is None:
            return False
        status = int(data[9:12])
        if status in (204, 304) or not QUICK_FIELDS.fullmatch(data, eol, end + 2):
            return False
        length = ex.on_response_head(status, data[: end + 2])
        if self.exchange is not ex:
            return True
        if length == len(data) - end - 4:
            if length:
                ex.on_response_body(data[end + 4 :])
            self._head = b""
            ex.on_response_complete(True)
            return True
        # Let the parser frame the body, from the start of this message.
        self._relayed = True
        self._head = data
        self._parser.feed_data(data)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.let_go()
        ex = self.exchange
        if ex is not None:
            self.exchange = None
            ex.on_upstream_lost()
        else:
            self.pool.discard(self)

    def pause_writing(self) -> None:
        if self.exchange is not None and self.holding is None:
            self.holding = self.exchange.proxy
            self.holding.block_reading(READ_BLOCK_DYNO)

    def resume_writing(self) -> None:
        self.let_go()

    def let_go(self) -> None:
        """Let the client held back by this connection's full socket read again."""
        proxy, self.holding = self.holding, None
        if proxy is not None:
            proxy.unblock_reading(READ_BLOCK_DYNO)

    # -- parser callbacks ------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.exchange is None:
            # A second response after the one asked for, in the same read.
            self.close()

    def on_headers_complete(self) -> None:
        head = self._head
        end = head.find(b"\r\n\r\n")
        self._in_head = False
        self._head = b""
        status = self._parser.get_status_code()
        # Interim responses (RFC 9110 §15.2) are not relayed: the router answers
        # ``Expect: 100-continue`` itself and never asks the dyno to.
        if 100 <= status < 200 and status != 101:
            self._interim = True
            self._in_head = True
            self._head = head[end + 4 :]
            return
        ex = self.exchange
        if self._relayed:
            self._relayed = False
            return
        if ex is not None and not self._head_only:
            if end < 0:
                # Only a head with bare LF line ends gets here.
                ex.on_bad_response("response head without CRLF line ends")
                return
            ex.on_response_head(status, head[: end + 2])

    def on_body(self, data: bytes) -> None:
        ex = self.exchange
        if ex is not None and not self._head_only:
            ex.on_response_body(data)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._in_head = True
        ex = self.exchange
        if ex is not None and not self._head_only:
            ex.on_response_complete(self._parser.should_keep_alive())

    # -- used by the exchange --------------------------------------------------

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def keeps_alive(self) -> bool:
        """Whether the dyno lets this connection carry another request."""
        return bool(self._parser.should_keep_alive())

    def end_at_head(self) -> None:
        """The current response has no body (it answers HEAD)."""
        self._head_only = True

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        self.exchange = None
        self.let_go()
        if self.transport is not None:
            self.transport.abort()


class UpstreamPool:
    """Idle keep-alive connections, most recently used first, per dyno address."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._idle: dict[Key, list[UpstreamConnection]] = {}
        # Dyno addresses in the current route table; None until the first one.
        self._live: set[Key] | None = None

    def take(self, key: Key) -> UpstreamConnection | None:
        """An idle connection to ``key`` that is still open, or None."""
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()
            if not conn.closed:
                return conn
        return None

    def put(self, conn: UpstreamConnection, now: float) -> None:
        """Keep ``conn`` for reuse, or close it if the dyno's pool is full.

        A connection to a dyno that has left the route table since the
        exchange began is closed: that dyno is being stopped.
        """
        conn.exchange = None
        if conn.closed:
            return
        if conn.holding is not None:
            # Its socket is still full of this request's body, and the
            # transport reports that only once: the next exchange's client
            # would not be held back by it.
            conn.close()
            return
        live = self._live
        if live is not None and conn.key not in live:
            conn.close()
            return
        conns = self._idle.get(conn.key)
        if conns is None:
            conns = self._idle[conn.key] = []
        if len(conns) >= self._size:
            conn.close()
            return
        conn.idle_since = now
        conn.used = True
        # A pooled connection must read, to notice the dyno closing it.
        if conn.reading_paused:
            conn.resume_reading()
        conns.append(conn)

    def discard(self, conn: UpstreamConnection) -> None:
        conns = self._idle.get(conn.key)
        if conns and conn in conns:
            conns.remove(conn)

    def sweep(self, older_than: float) -> None:
        """Close connections idle since before ``older_than`` (loop time)."""
        for conns in self._idle.values():
            stale = [c for c in conns if c.idle_since < older_than]
            for conn in stale:
                conns.remove(conn)
                conn.close()

    def retain(self, keys: set[Key]) -> None:
        """Close every idle connection to a dyno not in ``keys``, and close
        connections to such dynos as their exchanges end, instead of pooling."""
        self._live = keys
        for key in [k for k in self._idle if k not in keys]:
            for conn in self._idle.pop(key):
                conn.close()

    def idle_count(self, key: Key) -> int:
        """How many idle connections to ``key`` are pooled."""
        return sum(1 for c in self._idle.get(key, ()) if not c.closed)

    def close_all(self) -> None:
        self.retain(set())
