"""The per-request log line, and its trip to dynod by datagram.

Lines follow Heroku's router format and field order (dynod adds the timestamp
and the ``dynod[router]`` source)::

    at=info method=GET path="/" host=myapp.localhost request_id=...
    fwd="127.0.0.1" dyno=web.1 connect=1ms service=18ms status=200 bytes=13
    protocol=http

Lines go to the unix datagram socket ``logs.sock`` as ``APP\\nLINE`` records,
several to a datagram.  Sending never blocks and never fails the request: if
dynod is not listening or its queue is full, the line is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from dynod.router.hcodes import HCode

# Characters of log records per datagram: far below the socket's send buffer,
# which bounds a unix datagram's size.
_DATAGRAM_BUDGET = 32 * 1024


def format_line(
    *,
    method: str,
    path: str,
    host: str,
    request_id: str,
    fwd: str,
    dyno: str,
    connect_ms: int | None,
    service_ms: int | None,
    status: int,
    nbytes: int,
    code: HCode | None = None,
    cause: str | None = None,
    sock: str | None = None,
) -> str:
    """One router log line; ``None`` times print as empty values (``connect=``).

    ``cause`` (after ``desc``) says what was wrong with a refused request;
    ``sock`` (last) names the side whose socket ended an exchange early.
    """
    connect = "" if connect_ms is None else f"{connect_ms}ms"
    service = "" if service_ms is None else f"{service_ms}ms"
    # Quotes inside quoted values would let a client forge fields.
    path = path.replace('"', "%22")
    fwd = fwd.replace('"', "%22")
    head = (
        "at=info "
        if code is None
        else f'at={code.level.value} code={code.code} desc="{code.desc}" '
    )
    if cause is not None:
        head += f'cause="{cause}" '
    tail = "" if sock is None else f" sock={sock}"
    return (
        f'{head}method={method} path="{path}" host={host} request_id={request_id} '
        f'fwd="{fwd}" dyno={dyno} connect={connect} service={service} '
        f"status={status} bytes={nbytes} protocol=http{tail}"
    )


class LogSender:
    """Sends log lines to dynod's datagram socket, dropping what cannot go.

    Lines written during one turn of the event loop leave together, as one
    datagram of ``APP\\nLINE`` records joined by newlines (a line never holds
    one), so a busy worker makes one ``sendto`` per loop turn, not per request.
    """

    def __init__(
        self, path: str, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self._path = path
        self._loop = loop
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._batch: list[str] = []
        self._size = 0

    def send(self, app: str, line: str) -> None:
        """Queue one line for ``app``; never blocks, never raises."""
        record = f"{app}\n{line}"
        if self._loop is None:
            self._send(record)
            return
        if not self._batch:
            self._loop.call_soon(self.flush)
        self._batch.append(record)
        self._size += len(record)
        if self._size >= _DATAGRAM_BUDGET:
            self.flush()

    def flush(self) -> None:
        """Send the queued lines now."""
        if self._batch:
            batch, self._batch, self._size = self._batch, [], 0
            self._send("\n".join(batch))

    def _send(self, text: str) -> None:
        # Missing socket, nobody bound, or dynod's queue is full: the request
        # matters more than its log line.
        with contextlib.suppress(OSError):
            self._sock.sendto(text.encode(), self._path)

    def close(self) -> None:
        self.flush()
        self._sock.close()
