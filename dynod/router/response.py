"""Relaying a dyno's response head to the client, within Heroku's limits.

The head goes out as the dyno wrote it, minus hop-by-hop lines, plus the
router's framing and headers.  A head the router will not relay is H25 (502):
an invalid or conflicting ``Content-Length``, a status line or a
``Set-Cookie`` line over 8192 bytes, or a whole head over 512 KB.  A status
line the router cannot vouch for is H17 (503).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from dynod.router.hcodes import HCODES
from dynod.router.headers import BadResponse, scan_response_head
from dynod.router.tunnel import switch_protocols

if TYPE_CHECKING:
    from dynod.router.exchange import Exchange

# Heroku's limits: each of these lines, and the whole head.
MAX_LINE = 8192
MAX_HEAD = 512 * 1024
_SET_COOKIE_RE = re.compile(rb"\r\nset-cookie:[^\r]*", re.IGNORECASE)
_NO_BODY_STATUSES = (204, 304)
_H17, _H25 = HCODES["H17"], HCODES["H25"]


def oversized(head: bytes) -> bool:
    """Whether ``head`` passes one of the response limits."""
    if len(head) <= MAX_LINE:
        # No line can be longer than the whole: the common case costs nothing.
        return False
    if len(head) > MAX_HEAD or head.find(b"\r\n") > MAX_LINE:
        return True
    # The match includes the leading CRLF, which the limit does not count.
    return any(len(m[0]) - 2 > MAX_LINE for m in _SET_COOKIE_RE.finditer(head))


def relay_head(ex: Exchange, status: int, head: bytes) -> int:
    """Send the dyno's response head for ``ex`` on to its client.

    Returns the body's declared length when the dyno keeps the connection
    open afterwards, else -1.
    """
    if ex.done:
        return -1
    ex.status = status
    if oversized(head):
        ex.fail(_H25)
        return -1
    try:
        kept, length, chunked, has_id, close = scan_response_head(head)
    except BadResponse:
        ex.fail(_H25)
        return -1
    # RFC 9112 §4: version, space, three digits, space, a reason that may be
    # empty.  Heroku refuses a line without the second space, and RFC 9110
    # §15 makes codes outside 100-599 invalid: neither is relayed.
    if (
        not head.startswith(b"HTTP/1.")
        or not head.startswith(b" ", 12)
        or not 100 <= status <= 599
    ):
        ex.fail(_H17)
        return -1
    if status == 101:
        switch_protocols(ex, head, kept, has_id)
        return -1
    if ex.info.upgrade_to:
        # The dyno declined the upgrade; what the client sends next is in a
        # protocol nobody agreed on.
        ex.keep_alive = False
    head_only = ex.method == b"HEAD"
    # The status line as the dyno wrote it, said in the router's version.
    parts = [b"HTTP/1.1", head[8 : head.find(b"\r\n") + 2], kept]

    # Framing: keep a declared length, re-chunk anything else for HTTP/1.1
    # clients, and fall back to closing the connection for HTTP/1.0 ones.
    if length is None and not head_only and status not in _NO_BODY_STATUSES:
        ex.eof_framed = not chunked
        if ex.http10:
            ex.keep_alive = False
        else:
            ex.chunked_out = True
            parts.append(b"Transfer-Encoding: chunked\r\n")
    if ex.proxy.ctx.draining:
        ex.keep_alive = False
    if not ex.keep_alive:
        parts.append(b"Connection: close\r\n")
    elif ex.http10:
        parts.append(b"Connection: keep-alive\r\n")
    if not has_id:
        parts.append(b"X-Request-Id: %s\r\n" % ex.info.request_id)
    parts.append(b"Via: 1.1 dynod\r\n\r\n")
    ex.proxy.write_parts(parts)
    ex.response_started = True
    if head_only:
        conn = ex.upstream
        assert conn is not None
        conn.end_at_head()
        ex.on_response_complete(conn.keeps_alive())
    return -1 if length is None or close else length
