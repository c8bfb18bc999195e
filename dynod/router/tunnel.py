"""Upgraded connections (WebSockets and any other protocol) after a 101.

Until the dyno answers, what the client sends in the new protocol is held by
the exchange (reading paused once enough is held); after a 101 the exchange
relays bytes both ways until either side closes, and logs once at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dynod.router.hcodes import HCODES
from dynod.router.headers import upgrade_of

if TYPE_CHECKING:
    from dynod.router.exchange import Exchange

# Early bytes held before the client is asked to wait (its reading paused).
HOLD_LIMIT = 256 * 1024
READ_BLOCK_BUFFER = 4


def switch_protocols(ex: Exchange, head: bytes, kept: bytes, has_id: bool) -> None:
    """Relay a 101 and start relaying bytes both ways (RFC 9110 §15.2.2)."""
    if not ex.info.upgrade_to:
        # A switch nobody asked for cannot be relayed.
        ex.fail(HCODES["H17"])
        return
    ex.upgraded = True
    parts = [b"HTTP/1.1", head[8 : head.find(b"\r\n") + 2], kept]
    parts.append(b"Connection: Upgrade\r\nUpgrade: %s\r\n" % upgrade_of(head))
    if not has_id:
        parts.append(b"X-Request-Id: %s\r\n" % ex.info.request_id)
    parts.append(b"Via: 1.1 dynod\r\n\r\n")
    ex.proxy.write(b"".join(parts))
    ex.response_started = True
    early, ex.early = ex.early, None
    if early and ex.upstream is not None:
        ex.upstream.send(b"".join(early))
    if ex.blocked:
        ex.blocked = False
        ex.proxy.unblock_reading(READ_BLOCK_BUFFER)


def hold_early(ex: Exchange, data: bytes) -> None:
    """Keep client bytes sent before the dyno agreed to switch."""
    if ex.early is None:
        ex.early = []
    ex.early.append(data)
    if sum(map(len, ex.early)) > HOLD_LIMIT and not ex.blocked:
        ex.blocked = True
        ex.proxy.block_reading(READ_BLOCK_BUFFER)


def end_upgraded(ex: Exchange) -> None:
    """One side of an upgraded connection closed: close the other."""
    ex.done = True
    ex.release()
    ex.drop_upstream()
    ex.log(None, 101, ex.proxy.ctx.loop.time())
    ex.proxy.close()
