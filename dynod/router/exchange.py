"""One request and its response: choose a dyno, relay both ways, log the result.

The common case runs without a task: the app is running and an idle pooled
connection to the chosen dyno exists, so the request head goes out from the
parser callback that completed it.  Anything that has to wait (a new connection,
a retry on another dyno, a booting app) runs in one task per exchange.

An exchange ends exactly once (``done``): with the dyno's response, with a
router-made error page (an H code), or because the client went away.  Each end
writes one log line to the app's stream, except for hosts no app claims.

When a request goes to a dyno again:

- the connection was refused or not made in time: always (nothing was sent);
  the dyno is quarantined and another one is tried, up to ``connect_attempts``
  within ``connect_budget`` seconds; when every dyno is quarantined the request
  waits for the first to come out, and gets H99 if none does in the budget;
- a pooled connection closed or reset before any response byte: only for an
  idempotent method whose whole body so far was kept (``replay_limit``),
  because the dyno may have read and applied it before closing;
- a new connection closed before any response byte: never (H13).

After a 101 the exchange relays bytes both ways until either side closes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import TYPE_CHECKING

from dynod.router.hcodes import (
    HCODES,
    NO_SUCH_APP_PAGE,
    HCode,
    page_for,
    render_response,
)
from dynod.router.headers import (
    EXPECT_UNSUPPORTED,
    BadResponse,
    RequestInfo,
    scan_response_head,
    upgrade_of,
    upstream_head,
)
from dynod.router.logline import format_line
from dynod.router.table import AppRoute, AppState, DynoRoute
from dynod.router.upstream import UpstreamConnection

if TYPE_CHECKING:
    from dynod.router.proxy import ProxyConnection

# What a request for an app in each state gets when no dyno can take it.
_STATE_CODES = {
    AppState.NOT_DEPLOYED: HCODES["H81"],
    AppState.NO_WEB: HCODES["H14"],
    AppState.CRASHED: HCODES["H10"],
    AppState.MAINTENANCE: HCODES["H80"],
}
_H11, _H12, _H13, _H15, _H19, _H20, _H21, _H25, _H26, _H27, _H28, _H99 = (
    HCODES[c]
    for c in (
        "H11", "H12", "H13", "H15", "H19", "H20", "H21", "H25", "H26", "H27",
        "H28", "H99",
    )
)  # fmt: skip
# RFC 9110 §10.1.1: an expectation the router cannot meet is 417.
_H26_EXPECT = dataclasses.replace(_H26, status=417)
_NO_BODY_STATUSES = (204, 304)
# Codes after which the rest of the client's stream cannot be trusted.
_CLOSING_CODES = (_H26, _H26_EXPECT, _H28)
# RFC 9110 §9.2.2: repeating these has the same effect as sending them once,
# so a request that may or may not have reached a dyno can be sent again.
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
_NOTHING_TRIED: frozenset[str] = frozenset()
# Request body buffered while no dyno connection is ready, before the client is
# asked to wait (its reading paused).
_BUFFER_LIMIT = 256 * 1024
_READ_BLOCK_BUFFER = 4


class Exchange:
    """A request from ``proxy``'s client and the response it gets."""

    __slots__ = (
        "_attempts",
        "_blocked",
        "_bytes_out",
        "_chunked_out",
        "_connect_ms",
        "_counted",
        "_early",
        "_eof_framed",
        "_pending",
        "_pending_bytes",
        "_replay",
        "_replay_bytes",
        "_replayable",
        "_sent_at",
        "_status",
        "_task",
        "_upgraded",
        "app",
        "done",
        "dyno",
        "first_byte",
        "fwd",
        "http10",
        "info",
        "keep_alive",
        "last_io",
        "method",
        "proxy",
        "request_done",
        "response_started",
        "start_ms",
        "started",
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
    ) -> None:
        self.proxy = proxy
        self.method = method
        self.url = url
        self.info = info
        self.http10 = http10
        self.keep_alive = keep_alive
        self.started = proxy.ctx.loop.time()
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
        self._blocked = False
        self._task: asyncio.Task[None] | None = None
        self._connect_ms: int | None = None
        self._sent_at = 0.0
        self._chunked_out = False
        self._eof_framed = False
        self._bytes_out = 0
        self._status = 0
        self._attempts = 0
        # Body bytes sent so far, kept while the request may be sent again.
        self._replayable = method in IDEMPOTENT
        self._replay: list[bytes] | None = None
        self._replay_bytes = 0
        # After a 101, bytes are relayed as they come; before it, what the
        # client sends in the new protocol waits here.
        self._upgraded = False
        self._early: list[bytes] | None = None
        # Holds one of the app's backlog slots (H11) until the exchange ends.
        self._counted = False
        # Loop time of the last byte either way, for the idle timeout.
        self.last_io = self.started

    # -- dispatch --------------------------------------------------------------

    def begin(self) -> None:
        """Route the request; called once it is the connection's turn."""
        ctx = self.proxy.ctx
        info = self.info
        app = ctx.table.lookup(info.host)
        self.app = app
        if info.bad is not None:
            self.fail(_H26_EXPECT if info.bad == EXPECT_UNSUPPORTED else _H26)
            return
        # Answered before routing: ACME challenges, the TLS Host check.
        if ctx.front is not None and ctx.front(self):
            return
        if app is None:
            self._no_such_app()
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
        if app.state is AppState.RUNNING and app.dynos:
            dyno = ctx.pick(app, _NOTHING_TRIED)
            conn = ctx.pool.take(dyno.key) if dyno is not None else None
            if conn is not None and dyno is not None:
                self._attempts = 1
                self._attach(dyno, conn, None)
                return
        self._task = ctx.loop.create_task(self._dispatch())

    async def _dispatch(self, avoid: str | None = None) -> None:
        """Wait for a booting app, then connect, retrying across dynos.

        ``avoid`` names a dyno whose pooled connection just failed: another
        dyno is preferred, and only new connections are used.
        """
        ctx = self.proxy.ctx
        settings = ctx.settings
        app = self.app
        assert app is not None

        # A booting app holds the request until a dyno is up or the wait ends.
        deadline = self.started + settings.boot_wait
        while app.state is AppState.BOOTING:
            if ctx.loop.time() >= deadline:
                self.fail(_H20)
                return
            await asyncio.sleep(settings.boot_poll)
            if self.done:
                return
            found = ctx.table.lookup(self.info.host)
            if found is None:
                self._no_such_app()
                return
            app = self.app = found
        code = _STATE_CODES.get(app.state)
        if code is not None or not app.dynos:
            self.fail(code or HCODES["H14"])
            return

        # Each attempt goes to a dyno not tried yet; refusals and timeouts are
        # quarantined.  When every dyno is quarantined before the first
        # attempt, wait for the first to come out, within the connect budget.
        budget_end = ctx.loop.time() + settings.connect_budget
        tried: set[str] = set()
        if avoid is not None and len(app.dynos) > 1:
            tried.add(avoid)
        tried_here = 0
        failure = _H21
        while self._attempts < settings.connect_attempts:
            dyno = ctx.pick(app, tried)
            if dyno is None:
                ends = ctx.quarantine_ends(app, tried)
                if tried_here or ends is None:
                    break
                now = ctx.loop.time()
                if now >= budget_end:
                    self.fail(_H99)
                    return
                await asyncio.sleep(max(0.01, min(ends, budget_end) - now))
                if self.done:
                    return
                app = self.app = ctx.table.lookup(self.info.host) or app
                continue
            tried.add(dyno.name)
            tried_here += 1
            self._attempts += 1
            conn = None if avoid is not None else ctx.pool.take(dyno.key)
            if conn is not None:
                self._attach(dyno, conn, None)
                return
            began = ctx.loop.time()
            timeout = min(settings.connect_timeout, max(0.0, budget_end - began))
            try:
                conn = await asyncio.wait_for(self._connect(dyno), timeout)
            except TimeoutError:
                failure = _H19
                ctx.quarantine(dyno)
                continue
            except OSError:
                failure = _H21
                ctx.quarantine(dyno)
                continue
            if self.done:
                # The client left while we connected: keep the connection warm.
                ctx.pool.put(conn, ctx.loop.time())
                return
            self._attach(dyno, conn, int((ctx.loop.time() - began) * 1000))
            return
        self.fail(failure)

    async def _connect(self, dyno: DynoRoute) -> UpstreamConnection:
        pool = self.proxy.ctx.pool
        key = dyno.key
        _, conn = await self.proxy.ctx.loop.create_connection(
            lambda: UpstreamConnection(pool, key), dyno.addr, dyno.port
        )
        return conn

    def _attach(
        self, dyno: DynoRoute, conn: UpstreamConnection, connect_ms: int | None
    ) -> None:
        """Send the request head and any buffered body down ``conn``."""
        ctx = self.proxy.ctx
        self.dyno = dyno
        self.upstream = conn
        self._connect_ms = connect_ms
        conn.exchange = self
        if self.info.expect_continue and not self.request_done:
            # Once per request, also when it is sent to a second dyno.
            self.info.expect_continue = False
            self.proxy.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        head, self.fwd = upstream_head(
            self.method,
            self.url,
            self.info,
            client_ip=self.proxy.client_ip,
            port_line=self.proxy.forwarded,
            start_ms=self.start_ms,
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
            if self._blocked:
                self._blocked = False
                self.proxy.unblock_reading(_READ_BLOCK_BUFFER)
        if self.request_done and self.info.chunked:
            conn.send(b"0\r\n\r\n")
        self._sent_at = ctx.loop.time()
        ctx.watch_first_byte(self, self._sent_at)

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
        if self._pending_bytes > _BUFFER_LIMIT and not self._blocked:
            self._blocked = True
            self.proxy.block_reading(_READ_BLOCK_BUFFER)

    def on_request_complete(self) -> None:
        self.request_done = True
        if not self.done and self.upstream is not None and self.info.chunked:
            self.upstream.send(b"0\r\n\r\n")

    def _send_body(self, data: bytes) -> None:
        assert self.upstream is not None
        if self._replayable:
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
            self._replayable = False
            self._replay = None
        elif self._replay is None:
            self._replay = [data]
        else:
            self._replay.append(data)

    # -- response, from the dyno -----------------------------------------------

    def on_first_byte(self) -> None:
        self.first_byte = True
        self.last_io = self.proxy.ctx.loop.time()
        self.proxy.ctx.unwatch_first_byte(self)

    def on_response_head(self, status: int, head: bytes) -> int:
        """Relay the dyno's response head: its lines as they came, minus
        hop-by-hop ones, plus the router's framing and headers.

        Returns the body's declared length when the dyno keeps the connection
        open afterwards, else -1.
        """
        if self.done:
            return -1
        self._status = status
        try:
            kept, length, chunked, has_id, close = scan_response_head(head)
        except BadResponse:
            self.fail(_H25)
            return -1
        if not head.startswith(b"HTTP/1."):
            self.fail(HCODES["H17"])
            return -1
        if status == 101:
            self._switch_protocols(head, kept, has_id)
            return -1
        if self.info.upgrade_to:
            # The dyno declined the upgrade; what the client sends next is in a
            # protocol nobody agreed on.
            self.keep_alive = False
        head_only = self.method == b"HEAD"
        # The status line as the dyno wrote it, said in the router's version.
        parts = [b"HTTP/1.1", head[8 : head.find(b"\r\n") + 2], kept]

        # Framing: keep a declared length, re-chunk anything else for HTTP/1.1
        # clients, and fall back to closing the connection for HTTP/1.0 ones.
        if length is None and not head_only and status not in _NO_BODY_STATUSES:
            self._eof_framed = not chunked
            if self.http10:
                self.keep_alive = False
            else:
                self._chunked_out = True
                parts.append(b"Transfer-Encoding: chunked\r\n")
        if self.proxy.ctx.draining:
            self.keep_alive = False
        if not self.keep_alive:
            parts.append(b"Connection: close\r\n")
        elif self.http10:
            parts.append(b"Connection: keep-alive\r\n")
        if not has_id:
            parts.append(b"X-Request-Id: %s\r\n" % self.info.request_id)
        parts.append(b"Via: 1.1 dynod\r\n\r\n")
        self.proxy.write(b"".join(parts))
        self.response_started = True
        if head_only:
            conn = self.upstream
            assert conn is not None
            conn.end_at_head()
            self.on_response_complete(conn.keeps_alive())
        return -1 if length is None or close else length

    # -- upgraded connections (WebSockets and any other protocol) ---------------

    def _switch_protocols(self, head: bytes, kept: bytes, has_id: bool) -> None:
        """Relay a 101 and start relaying bytes both ways (RFC 9110 §15.2.2)."""
        if not self.info.upgrade_to:
            # A switch nobody asked for cannot be relayed.
            self.fail(HCODES["H17"])
            return
        self._upgraded = True
        parts = [b"HTTP/1.1", head[8 : head.find(b"\r\n") + 2], kept]
        parts.append(b"Connection: Upgrade\r\nUpgrade: %s\r\n" % upgrade_of(head))
        if not has_id:
            parts.append(b"X-Request-Id: %s\r\n" % self.info.request_id)
        parts.append(b"Via: 1.1 dynod\r\n\r\n")
        self.proxy.write(b"".join(parts))
        self.response_started = True
        early, self._early = self._early, None
        if early and self.upstream is not None:
            self.upstream.send(b"".join(early))
        if self._blocked:
            self._blocked = False
            self.proxy.unblock_reading(_READ_BLOCK_BUFFER)

    @property
    def upgraded(self) -> bool:
        return self._upgraded

    def from_client(self, data: bytes) -> None:
        """Bytes after an upgrade request's head, from the client."""
        if self.done:
            return
        self.last_io = self.proxy.ctx.loop.time()
        if self._upgraded:
            if self.upstream is not None:
                self.upstream.send(data)
            return
        # Not switched yet: hold them, and stop reading once enough is held.
        if self._early is None:
            self._early = []
        self._early.append(data)
        if sum(map(len, self._early)) > _BUFFER_LIMIT and not self._blocked:
            self._blocked = True
            self.proxy.block_reading(_READ_BLOCK_BUFFER)

    def from_dyno(self, data: bytes) -> None:
        """Bytes from the dyno after its 101."""
        if not self.done:
            self.last_io = self.proxy.ctx.loop.time()
            self._bytes_out += len(data)
            self.proxy.write(data)

    def _end_upgraded(self) -> None:
        """One side of an upgraded connection closed: close the other."""
        self.done = True
        self._release()
        self._drop_upstream()
        self._log(None, 101)
        self.proxy.close()

    def on_response_body(self, data: bytes) -> None:
        if self.done:
            return
        self.last_io = self.proxy.ctx.loop.time()
        self._bytes_out += len(data)
        if self._chunked_out:
            self.proxy.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.proxy.write(data)

    def on_response_complete(self, upstream_keep_alive: bool) -> None:
        if self.done or self._upgraded:
            return
        self.done = True
        self._release()
        if self._chunked_out:
            self.proxy.write(b"0\r\n\r\n")

        # The dyno connection is reusable only if both messages ended cleanly.
        ctx = self.proxy.ctx
        conn = self.upstream
        if conn is not None:
            if upstream_keep_alive and self.request_done and not conn.closed:
                ctx.pool.put(conn, ctx.loop.time())
            else:
                conn.close()
        self._log(None, self._status)
        self.proxy.exchange_finished(self, self.keep_alive)

    def on_upstream_lost(self) -> None:
        """The dyno closed the connection before the exchange ended."""
        if self.done:
            return
        if self._upgraded:
            self._end_upgraded()
            return
        if self.response_started:
            if self._eof_framed:
                # A response without length or chunks ends when the dyno closes.
                self.upstream = None
                self.on_response_complete(False)
            else:
                self._abort_client()
            return
        conn = self.upstream
        self.upstream = None
        if conn is not None and self._may_resend(conn):
            # Forget the first send, so its first-byte deadline cannot fire.
            self._sent_at = 0.0
            avoid = self.dyno.name if self.dyno is not None else ""
            self._task = self.proxy.ctx.loop.create_task(self._dispatch(avoid))
            return
        self.fail(_H13)

    def _may_resend(self, conn: UpstreamConnection) -> bool:
        """Whether a request whose connection closed before any response byte
        can safely go to a dyno again.

        A pooled connection may have been closed by the dyno (its keep-alive
        timeout, or its shutdown) just as the request went out; whether the
        dyno read the request first cannot be known.  So the request is sent
        again only if repeating it is harmless (an idempotent method, RFC 9110
        §9.2.2) and the whole body sent so far was kept (RFC 9112 §9.3.1).  A
        new connection closed without a response is the app's doing: H13.
        """
        return (
            conn.used
            and not self.first_byte
            and self._replayable
            and self._attempts < self.proxy.ctx.settings.connect_attempts
        )

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

    def fail(self, code: HCode) -> None:
        """End with a router-made error page for ``code`` (or a cut connection)."""
        if self.done:
            return
        self.done = True
        self._release()
        self._drop_upstream()
        if self.response_started:
            self._abort_client()
            return
        # After a refused request the rest of the stream cannot be trusted.
        keep = self.keep_alive and code not in _CLOSING_CODES
        keep = keep and not self.proxy.ctx.draining
        page = page_for(code)
        self.proxy.write(render_response(code.status, page, self._request_id(), keep))
        self._bytes_out = len(page)
        if self.app is not None:
            self._log(code, code.status)
        self.proxy.exchange_finished(self, keep)

    def client_gone(self) -> None:
        """The client closed its connection: stop, and tell the app's log."""
        if self.done:
            return
        if self._upgraded:
            self._end_upgraded()
            return
        self.done = True
        self._release()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._drop_upstream()
        if self.app is not None:
            self._log(_H27, 499)

    def _no_such_app(self) -> None:
        self.done = True
        response = render_response(
            404, NO_SUCH_APP_PAGE, self._request_id(), self.keep_alive
        )
        self.proxy.write(response)
        self.proxy.exchange_finished(self, self.keep_alive)

    def _abort_client(self) -> None:
        self.done = True
        self._release()
        self._drop_upstream()
        self._log(_H13 if not self.first_byte else None, self._status or 503)
        self.proxy.abort()

    def _release(self) -> None:
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
        if not self.request_done and not self._upgraded:
            self.fail(_H28)
        elif self.first_byte:
            self.done = True
            self._release()
            self._drop_upstream()
            self._log(_H15, self._status or 503)
            self.proxy.abort()

    def _drop_upstream(self) -> None:
        self.proxy.ctx.unwatch_first_byte(self)
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None

    def _request_id(self) -> str:
        return self.info.request_id.decode("latin-1")

    def _log(self, code: HCode | None, status: int) -> None:
        app = self.app
        if app is None:
            return
        ctx = self.proxy.ctx
        now = ctx.loop.time()
        fwd = self.fwd or self.proxy.client_ip
        if not self.fwd and self.info.forwarded_for is not None:
            fwd = self.info.forwarded_for + b", " + fwd
        sent = self._sent_at
        line = format_line(
            method=self.method.decode("latin-1"),
            path=self.url.decode("latin-1"),
            host=self.info.host,
            request_id=self._request_id(),
            fwd=fwd.decode("latin-1"),
            dyno=self.dyno.name if self.dyno is not None else "",
            connect_ms=self._connect_ms
            if self._connect_ms is not None
            else (0 if sent else None),
            service_ms=int((now - sent) * 1000) if sent else None,
            status=status,
            nbytes=self._bytes_out,
            code=code,
        )
        ctx.logs.send(app.name, line)
