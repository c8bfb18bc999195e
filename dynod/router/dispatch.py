"""Getting a request to a dyno: wait for a booting app, connect, retry.

When a request goes to a dyno again:

- the connection was refused or not made in time: always (nothing was sent);
  the dyno is quarantined and another one is tried, up to ``connect_attempts``
  within ``connect_budget`` seconds; when every dyno is quarantined the request
  waits for the first to come out, and gets H99 if none does in the budget.
  Each new attempt picks from the route table as it is then: a connect can
  take a second or more (a dropped SYN is sent again after 1 s), and a table
  swapped meanwhile may have retired every dyno the request first knew of;
- a pooled connection closed or reset before any response byte: only for an
  idempotent method whose whole body so far was kept (``replay_limit``),
  because the dyno may have read and applied it before closing;
- a new connection closed before any response byte: never (H13).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING

from dynod.router.hcodes import HCODES
from dynod.router.table import AppState, DynoRoute
from dynod.router.upstream import Key, UpstreamConnection

if TYPE_CHECKING:
    from dynod.router.exchange import Exchange

# What a request for an app in each state gets when no dyno can take it.
STATE_CODES = {
    AppState.NOT_DEPLOYED: HCODES["H81"],
    AppState.NO_WEB: HCODES["H14"],
    AppState.CRASHED: HCODES["H10"],
    AppState.MAINTENANCE: HCODES["H80"],
}
_H19, _H20, _H21, _H99 = (HCODES[c] for c in ("H19", "H20", "H21", "H99"))
# RFC 9110 §9.2.2: repeating these has the same effect as sending them once,
# so a request that may or may not have reached a dyno can be sent again.
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


async def dispatch(ex: Exchange, avoid: Key | None = None) -> None:
    """Wait for a booting app, then connect ``ex`` to a dyno, retrying.

    ``avoid`` is the address of a dyno whose pooled connection just failed:
    another dyno is preferred, and only new connections are used.
    """
    ctx = ex.proxy.ctx
    settings = ctx.settings
    app = ex.app
    assert app is not None
    if ex.info.check is not None:
        target = _check_target(ex)
        if target is not None:
            await _dispatch_check(ex, target)
            return

    # A booting app holds the request until a dyno is up or the wait ends.
    deadline = ex.started + settings.boot_wait
    while app.state is AppState.BOOTING:
        if ctx.loop.time() >= deadline:
            ex.fail(_H20)
            return
        await asyncio.sleep(settings.boot_poll)
        if ex.done:
            return
        found = ctx.table.lookup(ex.info.host)
        if found is None:
            ex.no_such_app()
            return
        app = ex.app = found
    code = STATE_CODES.get(app.state)
    if code is not None or not app.dynos:
        ex.fail(code or HCODES["H14"])
        return

    # Each attempt goes to a dyno not tried yet; refusals and timeouts are
    # quarantined.  When every dyno is quarantined before the first
    # attempt, wait for the first to come out, within the connect budget.
    budget_end = ctx.loop.time() + settings.connect_budget
    tried: set[Key] = set()
    if avoid is not None and len(app.dynos) > 1:
        tried.add(avoid)
    tried_here = 0
    failure = _H21
    while ex.attempts < settings.connect_attempts:
        dyno = ctx.pick(app, tried)
        if dyno is None:
            ends = ctx.quarantine_ends(app, tried)
            if tried_here or ends is None:
                break
            now = ctx.loop.time()
            if now >= budget_end:
                ex.fail(_H99)
                return
            await asyncio.sleep(max(0.01, min(ends, budget_end) - now))
            if ex.done:
                return
            app = ex.app = ctx.table.lookup(ex.info.host) or app
            continue
        tried.add(dyno.key)
        tried_here += 1
        ex.attempts += 1
        conn = None if avoid is not None else ctx.pool.take(dyno.key)
        if conn is not None:
            ex.attach(dyno, conn, None, ctx.loop.time())
            return
        began = ctx.loop.time()
        timeout = min(settings.connect_timeout, max(0.0, budget_end - began))
        try:
            conn = await asyncio.wait_for(_connect(ex, dyno), timeout)
        except (TimeoutError, OSError) as exc:
            failure = _H19 if isinstance(exc, TimeoutError) else _H21
            # The line of a request no dyno took names the last one tried.
            ex.dyno = dyno
            ex.connect_ms = int((ctx.loop.time() - began) * 1000)
        else:
            if ex.done:
                # The client left while we connected: keep the connection warm.
                ctx.pool.put(conn, ctx.loop.time())
                return
            now = ctx.loop.time()
            ex.attach(dyno, conn, int((now - began) * 1000), now)
            return
        ctx.quarantine(dyno)
        if ex.done:
            return
        app = ex.app = ctx.table.lookup(ex.info.host) or app
    ex.fail(failure)


def _check_target(ex: Exchange) -> DynoRoute | None:
    """The dyno a health check from dynod names; None for anything else.

    A check without the table's token is an ordinary request (the header is
    never relayed either way).
    """
    token, _, name = (ex.info.check or b"").partition(b" ")
    expected = ex.proxy.ctx.table.check_token
    if not expected or not secrets.compare_digest(token, expected):
        return None
    assert ex.app is not None
    return ex.app.checked(name.decode("latin-1"))


async def _dispatch_check(ex: Exchange, dyno: DynoRoute) -> None:
    """Send a health check to its one dyno, whatever the app's state: no
    retries elsewhere and no pooled connection, the answer must be that
    dyno's own."""
    ctx = ex.proxy.ctx
    ex.attempts += 1
    began = ctx.loop.time()
    try:
        conn = await asyncio.wait_for(_connect(ex, dyno), ctx.settings.connect_timeout)
    except (TimeoutError, OSError) as exc:
        ex.dyno = dyno
        ex.connect_ms = int((ctx.loop.time() - began) * 1000)
        ex.fail(_H19 if isinstance(exc, TimeoutError) else _H21)
        return
    if ex.done:
        conn.close()
        return
    now = ctx.loop.time()
    ex.attach(dyno, conn, int((now - began) * 1000), now)


async def _connect(ex: Exchange, dyno: DynoRoute) -> UpstreamConnection:
    ctx = ex.proxy.ctx
    pool = ctx.pool
    key = dyno.key
    _, conn = await ctx.loop.create_connection(
        lambda: UpstreamConnection(pool, key), dyno.addr, dyno.port
    )
    return conn


def may_resend(ex: Exchange, conn: UpstreamConnection) -> bool:
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
        and not ex.first_byte
        and ex.replayable
        and ex.attempts < ex.proxy.ctx.settings.connect_attempts
    )
