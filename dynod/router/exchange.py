"""One request and its response: choose a dyno, relay both ways, log the result.

The common case runs without a task: the app is running and an idle pooled
connection to the chosen dyno exists, so the request head goes out from the
parser callback that completed it.  Anything that has to wait (a new connection,
a retry on another dyno, a booting app) runs in one task per exchange.

An exchange ends exactly once (``done``): with the dyno's response, with a
router-made error page (an H code), or because the client went away.  Each end
writes one log line to the app's stream, except for hosts no app claims.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from dynod.router.hcodes import (
    HCODES,
    NO_SUCH_APP_PAGE,
    HCode,
    page_for,
    render_response,
)
from dynod.router.headers import RequestInfo, scan_response, upstream_head
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
_H12, _H13, _H19, _H20, _H21, _H26, _H27 = (
    HCODES[c] for c in ("H12", "H13", "H19", "H20", "H21", "H26", "H27")
)
_NO_BODY_STATUSES = (204, 304)
# Request body buffered while no dyno connection is ready, before the client is
# asked to wait (its reading paused).
_BUFFER_LIMIT = 256 * 1024
_READ_BLOCK_BUFFER = 4


class Exchange:
    """A request from ``proxy``'s client and the response it gets."""

    __slots__ = (
        "_blocked",
        "_bytes_out",
        "_chunked_out",
        "_connect_ms",
        "_eof_framed",
        "_pending",
        "_pending_bytes",
        "_retried",
        "_sent_at",
        "_status",
        "_task",
        "app",
        "done",
        "dyno",
        "first_byte",
        "fwd",
        "http10",
        "info",
        "keep_alive",
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
        self._retried = False

    # -- dispatch --------------------------------------------------------------

    def begin(self) -> None:
        """Route the request; called once it is the connection's turn."""
        ctx = self.proxy.ctx
        info = self.info
        app = ctx.table.lookup(info.host)
        self.app = app
        if info.bad is not None:
            self.fail(_H26)
            return
        if app is None:
            self._no_such_app()
            return
        # Fast path: a running app and a warm connection to the chosen dyno.
        if app.state is AppState.RUNNING and app.dynos:
            dyno = ctx.pick(app, set())
            conn = ctx.pool.take(dyno.key) if dyno is not None else None
            if conn is not None and dyno is not None:
                self._attach(dyno, conn, None)
                return
        self._task = ctx.loop.create_task(self._dispatch())

    async def _dispatch(self, fresh: bool = False) -> None:
        """Wait for a booting app, then connect, retrying across dynos."""
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

        # Each attempt goes to a dyno not tried yet; refusals are quarantined.
        tried: set[str] = set()
        failure = _H21
        for _ in range(settings.connect_attempts):
            dyno = ctx.pick(app, tried)
            if dyno is None:
                break
            tried.add(dyno.name)
            conn = None if fresh else ctx.pool.take(dyno.key)
            if conn is not None:
                self._attach(dyno, conn, None)
                return
            began = ctx.loop.time()
            try:
                conn = await asyncio.wait_for(
                    self._connect(dyno), settings.connect_timeout
                )
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
            self.proxy.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        head, self.fwd = upstream_head(
            self.method,
            self.url,
            self.info,
            client_ip=self.proxy.client_ip,
            port_line=ctx.port_line,
            start_ms=self.start_ms,
        )
        conn.send(head)
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
        if self.info.chunked:
            self.upstream.send(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.upstream.send(data)

    # -- response, from the dyno -----------------------------------------------

    def on_first_byte(self) -> None:
        self.first_byte = True

    def on_response_head(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], _ka: bool
    ) -> None:
        if self.done:
            return
        self._status = status
        resp = scan_response(headers)
        head_only = self.method == b"HEAD"
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        lines += resp.kept

        # Framing: keep a declared length, re-chunk anything else for HTTP/1.1
        # clients, and fall back to closing the connection for HTTP/1.0 ones.
        if head_only or status in _NO_BODY_STATUSES:
            if resp.content_length is not None:
                lines.append(b"Content-Length: %d\r\n" % resp.content_length)
        elif resp.content_length is not None:
            lines.append(b"Content-Length: %d\r\n" % resp.content_length)
        else:
            self._eof_framed = not resp.chunked
            if self.http10:
                self.keep_alive = False
            else:
                self._chunked_out = True
                lines.append(b"Transfer-Encoding: chunked\r\n")
        if self.proxy.ctx.draining:
            self.keep_alive = False
        if not self.keep_alive:
            lines.append(b"Connection: close\r\n")
        elif self.http10:
            lines.append(b"Connection: keep-alive\r\n")
        if not resp.has_request_id:
            lines.append(b"X-Request-Id: %s\r\n" % self.info.request_id)
        lines.append(b"Via: 1.1 dynod\r\n\r\n")
        self.proxy.write(b"".join(lines))
        self.response_started = True
        if head_only:
            assert self.upstream is not None
            self.upstream.end_at_head()
            self.on_response_complete(_ka)

    def on_response_body(self, data: bytes) -> None:
        if self.done:
            return
        self._bytes_out += len(data)
        if self._chunked_out:
            self.proxy.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.proxy.write(data)

    def on_response_complete(self, upstream_keep_alive: bool) -> None:
        if self.done:
            return
        self.done = True
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
        # A pooled connection the dyno closed just as we reused it: retry once
        # on a new connection when nothing of a body has been sent.
        nobody = not self.info.chunked and not self.info.content_length
        stale = conn is not None and conn.used and not self.first_byte
        if stale and nobody and not self._retried:
            self._retried = True
            # Forget the first send, so its first-byte deadline cannot fire.
            self._sent_at = 0.0
            self._task = self.proxy.ctx.loop.create_task(self._dispatch(True))
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

    def fail(self, code: HCode) -> None:
        """End with a router-made error page for ``code`` (or a cut connection)."""
        if self.done:
            return
        self.done = True
        self._drop_upstream()
        if self.response_started:
            self._abort_client()
            return
        keep = self.keep_alive and code.status != 400 and not self.proxy.ctx.draining
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
        self.done = True
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
        self._drop_upstream()
        self._log(_H13 if not self.first_byte else None, self._status or 503)
        self.proxy.abort()

    def _drop_upstream(self) -> None:
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
