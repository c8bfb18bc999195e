"""Keep-alive connections to dynos, and the per-dyno pool of idle ones.

An :class:`UpstreamConnection` carries one exchange at a time: the router never
pipelines requests to a dyno.  Between exchanges it waits in the
:class:`UpstreamPool` under the dyno's address; if the dyno closes it (or sends
anything unasked) while it waits, it leaves the pool and is never handed out.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

import httptools

if TYPE_CHECKING:
    from dynod.router.exchange import Exchange

Key = tuple[str, int]


class UpstreamConnection(asyncio.Protocol):
    """One TCP connection to a dyno, parsing the responses it sends back."""

    __slots__ = (
        "_head_only", "_headers", "_interim", "_parser", "_reason", "closed",
        "exchange", "idle_since", "key", "pool", "transport", "used",
    )  # fmt: skip

    def __init__(self, pool: UpstreamPool, key: Key) -> None:
        self.key = key
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.closed = False
        self.idle_since = 0.0
        self.used = False
        self._parser = httptools.HttpResponseParser(self)
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._interim = False
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
        if not ex.first_byte:
            ex.on_first_byte()
        proxy = ex.proxy
        proxy.cork()
        try:
            self._parser.feed_data(data)
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

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        ex = self.exchange
        if ex is not None:
            self.exchange = None
            ex.on_upstream_lost()
        else:
            self.pool.discard(self)

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.proxy.block_reading(1)

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.proxy.unblock_reading(1)

    # -- parser callbacks ------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reason = b""
        self._headers = []

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        # Interim responses (RFC 9110 §15.2) are not relayed: the router answers
        # ``Expect: 100-continue`` itself and never asks the dyno to.
        if 100 <= status < 200 and status != 101:
            self._interim = True
            return
        ex = self.exchange
        if ex is not None and not self._head_only:
            ex.on_response_head(
                status, self._reason, self._headers, self._parser.should_keep_alive()
            )

    def on_body(self, data: bytes) -> None:
        ex = self.exchange
        if ex is not None and not self._head_only:
            ex.on_response_body(data)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        ex = self.exchange
        if ex is not None and not self._head_only:
            ex.on_response_complete(self._parser.should_keep_alive())

    # -- used by the exchange --------------------------------------------------

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def end_at_head(self) -> None:
        """The current response has no body (it answers HEAD)."""
        self._head_only = True

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        self.exchange = None
        if self.transport is not None:
            self.transport.abort()


class UpstreamPool:
    """Idle keep-alive connections, most recently used first, per dyno address."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._idle: dict[Key, list[UpstreamConnection]] = {}

    def take(self, key: Key) -> UpstreamConnection | None:
        """An idle connection to ``key`` that is still open, or None."""
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()
            if not conn.closed:
                return conn
        return None

    def put(self, conn: UpstreamConnection, now: float) -> None:
        """Keep ``conn`` for reuse, or close it if the dyno's pool is full."""
        conn.exchange = None
        if conn.closed:
            return
        conns = self._idle.setdefault(conn.key, [])
        if len(conns) >= self._size:
            conn.close()
            return
        conn.idle_since = now
        conn.used = True
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
        """Close every idle connection to a dyno not in ``keys``."""
        for key in [k for k in self._idle if k not in keys]:
            for conn in self._idle.pop(key):
                conn.close()

    def close_all(self) -> None:
        self.retain(set())
