"""One request and its response: choose a dyno, relay both ways, log the result.

The common case runs without a task: the app is running and an idle pooled
connection to the chosen dyno exists, so the request head goes out from the
parser callback that completed it.  Anything that has to wait (a new connection,
a retry on another dyno, a booting app) runs in one task per exchange.

An exchange ends exactly once (``done``): with the dyno's response, with a
router-made error page (an H code), or because the client went away.  Each end
writes one log line to the app's stream, except for hosts no app claims.

Getting the request to a dyno, with its retries, is in :mod:`dispatch`;
relaying an upgraded connection after a 101 is in :mod:`tunnel`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import TYPE_CHECKING

from dynod.router.dispatch import IDEMPOTENT, dispatch, may_resend
from dynod.router.hcodes import (
    HCODES,
    NO_SUCH_APP_PAGE,
    HCode,
    page_for,
    render_response,
)
from dynod.router.headers import (
    EXPECT_UNSUPPORTED,
    RequestInfo,
    upstream_head,
)
from dynod.router.logline import format_record, header_text
from dynod.router.response import relay_head
from dynod.router.table import AppRoute, AppState, DynoRoute
from dynod.router.tunnel import (
    READ_BLOCK_BUFFER,
    end_upgraded,
    hold_early,
)
from dynod.router.upstream import Key, UpstreamConnection

if TYPE_CHECKING:
    from dynod.router.proxy import ProxyConnection

_H11, _H12, _H13, _H15, _H18, _H26, _H27, _H28 = (
    HCODES[c] for c in ("H11", "H12", "H13", "H15", "H18", "H26", "H27", "H28")
)
# RFC 9110 §10.1.1: an expectation the router cannot meet is 417.
_H26_EXPECT = dataclasses.replace(_H26, status=417)
# Codes after which the rest of the client's stream cannot be trusted.
_CLOSING_CODES = (_H26, _H26_EXPECT, _H28)
_NOTHING_TRIED: frozenset[Key] = frozenset()
# Request body buffered while no dyno connection is ready, before the client is
# asked to wait (its reading paused).
_BUFFER_LIMIT = 256 * 1024


class Exchange:
    """A request from ``proxy``'s client and the response it gets."""

    __slots__ = (
        "_bytes_out",
        "_counted",
        "_pending",
        "_pending_bytes",
        "_replay",
        "_replay_bytes",
        "_sent_at",
        "app",
        "attempts",
        "blocked",
        "chunked_out",
        "connect_ms",
        "done",
        "dyno",
        "early",
        "eof_framed",
        "first_byte",
        "fwd",
        "http10",
        "info",
        "keep_alive",
        "last_io",
        "method",
        "proxy",
        "replayable",
        "request_done",
        "response_started",
        "start_ms",
        "started",
        "status",
        "task",
        "upgraded",
        "upstream",
        "url",
    )

    def __init__(
        self,
        proxy: ProxyConnection,
        method: bytes,
        url: bytes,
        info: RequestInfo,
        http10: bool,
        keep_alive: bool,
        now: float,
    ) -> None:
        """``now`` is the loop time the request's head arrived."""
        self.proxy = proxy
        self.method = method
        self.url = url
        self.info = info
        self.http10 = http10
        self.keep_alive = keep_alive
        self.started = now
        self.start_ms = int(time.time() * 1000)
        self.app: AppRoute | None = None
        self.dyno: DynoRoute | None = None
        self.upstream: UpstreamConnection | None = None
        self.done = False
        self.first_byte = False
        self.response_started = False
        self.request_done = False
        self.fwd = b""
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self.blocked = False
        self.task: asyncio.Task[None] | None = None
        # How long the connection to ``dyno`` took to make (or to fail).
        self.connect_ms: int | None = None
        self._sent_at = 0.0
        self.chunked_out = False
        self.eof_framed = False
        self._bytes_out = 0
        self.status = 0
        self.attempts = 0
        # Body bytes sent so far, kept while the request may be sent again.
        self.replayable = method in IDEMPOTENT
        self._replay: list[bytes] | None = None
        self._replay_bytes = 0
        # After a 101, bytes are relayed as they come; before it, what the
        # client sends in the new protocol waits here.
        self.upgraded = False
        self.early: list[bytes] | None = None
        # Holds one of the app's backlog slots (H11) until the exchange ends.
        self._counted = False
        # Loop time of the last byte either way, for the idle timeout.
        self.last_io = self.started

    # -- dispatch --------------------------------------------------------------

    def begin(self, now: float) -> None:
        """Route the request; called once it is the connection's turn.

        ``now`` is the loop time, read once by the caller for everything one
        event does (here and below): the hot path reads the clock twice per
        request, not ten times.
        """
        ctx = self.proxy.ctx
        info = self.info
        app = ctx.table.lookup(info.host)
        self.app = app
        if info.bad is not None:
            if info.bad == EXPECT_UNSUPPORTED:
                self.fail(_H26_EXPECT, cause="unsupported expect header value")
            else:
                self.fail(_H26, cause="bad header")
            return
        # Answered before routing: ACME challenges, the TLS Host check.
        if ctx.front is not None and ctx.front(self):
            return
        if app is None:
            self.no_such_app()
            return
        # Each app may have so many requests in flight per web dyno (H11).
        in_flight = ctx.in_flight
        count = in_flight.get(app.name, 0)
        if count >= ctx.settings.backlog_per_dyno * max(1, len(app.dynos)):
            self.fail(_H11)
            return
        in_flight[app.name] = count + 1
        self._counted = True
        # Fast path: a running app and a warm connection to the chosen dyno.
        if app.state is AppState.RUNNING and app.dynos and info.check is None:
            dyno = ctx.pick(app, _NOTHING_TRIED)
            conn = ctx.pool.take(dyno.key) if dyno is not None else None
            if conn is not None and dyno is not None:
                self.attempts = 1
                self.attach(dyno, conn, None, now)
                return
        self.task = ctx.loop.create_task(dispatch(self))

    def attach(
        self,
        dyno: DynoRoute,
        conn: UpstreamConnection,
        connect_ms: int | None,
        now: float,
    ) -> None:
        """Send the request head and any buffered body down ``conn``."""
        proxy = self.proxy
        ctx = proxy.ctx
        self.dyno = dyno
        self.upstream = conn
        self.connect_ms = connect_ms
        conn.exchange = self
        if proxy.write_paused:
            # The client's socket filled during an earlier exchange (its
            # requests were pipelined): the transport reports that once, so
            # this dyno must wait for the drain like the one before it.
            conn.pause_reading()
        if self.info.expect_continue and not self.request_done:
            # Once per request, also when it is sent to a second dyno.
            self.info.expect_continue = False
            proxy.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        head, self.fwd = upstream_head(
            self.method,
            self.url,
            self.info,
            proxy.client_ip,
            proxy.forwarded,
            self.start_ms,
        )
        conn.send(head)
        if self._replay:
            # A retry: what the failed connection carried goes out again.
            for chunk in self._replay:
                conn.send(self._framed(chunk))
        if self._pending:
            for chunk in self._pending:
                self._send_body(chunk)
            self._pending = []
            self._pending_bytes = 0
            if self.blocked:
                self.blocked = False
                self.proxy.unblock_reading(READ_BLOCK_BUFFER)
        if self.request_done and self.info.chunked:
            conn.send(b"0\r\n\r\n")
        self._sent_at = now
        ctx.watch_first_byte(self, now)

    # -- request body, from the client -----------------------------------------

    def on_request_body(self, data: bytes) -> None:
        if self.done:
            return
        self.last_io = self.proxy.ctx.loop.time()
        if self.upstream is not None:
            self._send_body(data)
            return
        # No dyno yet: hold the body, and stop reading once enough is held.
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes > _BUFFER_LIMIT and not self.blocked:
            self.blocked = True
            self.proxy.block_reading(READ_BLOCK_BUFFER)

    def on_request_complete(self) -> None:
        self.request_done = True
        if not self.done and self.upstream is not None and self.info.chunked:
            self.upstream.send(b"0\r\n\r\n")

    def _send_body(self, data: bytes) -> None:
        assert self.upstream is not None
        if self.replayable:
            self._keep_for_replay(data)
        self.upstream.send(self._framed(data))

    def _framed(self, data: bytes) -> bytes:
        if self.info.chunked:
            return b"%x\r\n%s\r\n" % (len(data), data)
        return data

    def _keep_for_replay(self, data: bytes) -> None:
        self._replay_bytes += len(data)
        if self._replay_bytes > self.proxy.ctx.settings.replay_limit:
            # Too long to keep: this request can no longer be sent again.
            self.replayable = False
            self._replay = None
        elif self._replay is None:
            self._replay = [data]
        else:
            self._replay.append(data)

    # -- response, from the dyno -----------------------------------------------

    # The dyno's connection sets ``last_io`` as each of its reads begins, so
    # the calls below made from that read need no clock of their own.

    def on_first_byte(self) -> None:
        self.first_byte = True
        self.proxy.ctx.unwatch_first_byte(self)

    def on_response_head(self, status: int, head: bytes) -> int:
        """Relay the dyno's response head (see :func:`relay_head`)."""
        return relay_head(self, status, head)

    def from_client(self, data: bytes) -> None:
        """Bytes after an upgrade request's head, from the client."""
        if self.done:
            return
        self.last_io = self.proxy.ctx.loop.time()
        if self.upgraded:
            if self.upstream is not None:
                self.upstream.send(data)
            return
        # Not switched yet: hold them, and stop reading once enough is held.
        hold_early(self, data)

    def from_dyno(self, data: bytes) -> None:
        """Bytes from the dyno after its 101."""
        if not self.done:
            self._bytes_out += len(data)
            self.proxy.write(data)

    def on_response_body(self, data: bytes) -> None:
        if self.done:
            return
        self._bytes_out += len(data)
        if self.chunked_out:
            self.proxy.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.proxy.write(data)

    def on_response_complete(self, upstream_keep_alive: bool) -> None:
        if self.done or self.upgraded:
            return
        self.done = True
        self.release()
        if self.chunked_out:
            self.proxy.write(b"0\r\n\r\n")

        # The dyno connection is reusable only if both messages ended cleanly.
        # The response ended in the read (or the close) that set ``last_io``.
        now = self.last_io
        conn = self.upstream
        if conn is not None:
            if upstream_keep_alive and self.request_done and not conn.closed:
                self.proxy.ctx.pool.put(conn, now)
            else:
                conn.close()
        self.log(None, self.status, now)
        self.proxy.exchange_finished(self, self.keep_alive, now)

    def on_upstream_lost(self) -> None:
        """The dyno closed the connection before the exchange ended."""
        if self.done:
            return
        if self.upgraded:
            end_upgraded(self)
            return
        if self.response_started:
            if self.eof_framed:
                # A response without length or chunks ends when the dyno closes.
                self.upstream = None
                self.last_io = self.proxy.ctx.loop.time()
                self.on_response_complete(False)
            else:
                # Cut mid-response: the client gets what came, then a close.
                self._abort_client(_H18, sock="backend")
            return
        conn = self.upstream
        self.upstream = None
        if conn is not None and may_resend(self, conn):
            # Forget the first send, so its first-byte deadline cannot fire.
            self._sent_at = 0.0
            avoid = self.dyno.key if self.dyno is not None else ("", 0)
            self.task = self.proxy.ctx.loop.create_task(dispatch(self, avoid))
            return
        self.fail(_H13)

    def on_bad_response(self, reason: str) -> None:
        if self.response_started:
            self._abort_client()
        else:
            self.fail(HCODES["H17"])

    def first_byte_overdue(self, sent_at: float) -> None:
        """The first-byte timeout passed for the send made at ``sent_at``."""
        if not self.done and not self.first_byte and sent_at == self._sent_at:
            self.fail(_H12)

    # -- endings ---------------------------------------------------------------

    def fail(self, code: HCode, cause: str | None = None) -> None:
        """End with a router-made error page for ``code`` (or a cut connection).

        ``cause`` goes to the log line: what was wrong with the request.
        """
        if self.done:
            return
        self.done = True
        self.release()
        self.drop_upstream()
        if self.response_started:
            self._abort_client()
            return
        # After a refused request the rest of the stream cannot be trusted.
        keep = self.keep_alive and code not in _CLOSING_CODES
        keep = keep and not self.proxy.ctx.draining
        page = page_for(code, self.app.pages if self.app is not None else None)
        self.proxy.write(render_response(code.status, page, self._request_id(), keep))
        self._bytes_out = len(page)
        now = self.proxy.ctx.loop.time()
        if self.app is not None:
            self.log(code, code.status, now, cause=cause)
        self.proxy.exchange_finished(self, keep, now)

    def client_gone(self) -> None:
        """The client closed its connection: stop, and tell the app's log."""
        if self.done:
            return
        if self.upgraded:
            end_upgraded(self)
            return
        self.done = True
        self.release()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
        self.drop_upstream()
        if self.app is not None:
            self.log(_H27, 499, self.proxy.ctx.loop.time(), sock="client")

    def no_such_app(self) -> None:
        self.done = True
        response = render_response(
            404, NO_SUCH_APP_PAGE, self._request_id(), self.keep_alive
        )
        self.proxy.write(response)
        self.proxy.exchange_finished(self, self.keep_alive, self.proxy.ctx.loop.time())

    def _abort_client(self, code: HCode | None = None, sock: str | None = None) -> None:
        """Cut the client's connection mid-response, logging ``code``."""
        self.done = True
        self.release()
        self.drop_upstream()
        if code is None and not self.first_byte:
            code = _H13
        status = code.status if code is not None and sock else self.status or 503
        self.log(code, status, self.proxy.ctx.loop.time(), sock=sock)
        self.proxy.abort()

    def release(self) -> None:
        if self._counted:
            self._counted = False
            assert self.app is not None
            in_flight = self.proxy.ctx.in_flight
            left = in_flight[self.app.name] - 1
            if left:
                in_flight[self.app.name] = left
            else:
                del in_flight[self.app.name]

    def check_idle(self, since: float) -> None:
        """End the exchange if no byte went either way since ``since``.

        A client that stopped sending its request body gets H28 (499); a
        response, or an upgraded connection, that went quiet is cut: H15.
        Before the dyno's first byte the first-byte timeout (H12) applies.
        """
        if self.done or self.last_io >= since:
            return
        if not self.request_done and not self.upgraded:
            self.fail(_H28)
        elif self.first_byte:
            self.done = True
            self.release()
            self.drop_upstream()
            self.log(_H15, self.status or 503, self.proxy.ctx.loop.time())
            self.proxy.abort()

    def drop_upstream(self) -> None:
        self.proxy.ctx.unwatch_first_byte(self)
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None

    def _request_id(self) -> str:
        return self.info.request_id.decode("latin-1")

    def log(
        self,
        code: HCode | None,
        status: int,
        now: float,
        cause: str | None = None,
        sock: str | None = None,
    ) -> None:
        """Send the exchange's line to the app's log; ``now`` is its end."""
        app = self.app
        if app is None:
            return
        ctx = self.proxy.ctx
        fwd = self.fwd or self.proxy.client_ip
        if not self.fwd and self.info.forwarded_for is not None:
            fwd = self.info.forwarded_for + b", " + fwd
        sent = self._sent_at
        connect_ms = self.connect_ms
        if connect_ms is None and sent:
            connect_ms = 0
        line = format_record(
            code, self.method, header_text(self.url), self.info.host.encode(),
            self.info.request_id, header_text(fwd),
            self.dyno.name.encode() if self.dyno is not None else b"",
            connect_ms, int((now - sent) * 1000) if sent else None,
            status, self._bytes_out, self.proxy.protocol, cause, sock,
        )  # fmt: skip
        ctx.logs.send(app.name, line)
