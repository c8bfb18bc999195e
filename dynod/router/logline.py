"""The per-request log line, and its trip to dynod by datagram.

Lines follow Heroku's router format and field order (dynod adds the timestamp
and the ``dynod[router]`` source)::

    at=info method=GET path="/" host=myapp.localhost request_id=...
    fwd="127.0.0.1" dyno=web.1 connect=1ms service=18ms status=200 bytes=13
    protocol=http

``protocol`` is ``https`` for requests that came in over TLS (the form of
Heroku's legacy router, which names the scheme and nothing more).

Lines go to the unix datagram socket ``logs.sock`` as ``APP\\nLINE`` records,
several to a datagram.  Sending never blocks and never fails the request: if
dynod is not listening or its queue is full, the line is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from dynod.router.hcodes import HCode

# Bytes of log records per datagram: far below the socket's send buffer, which
# bounds a unix datagram's size.
_DATAGRAM_BUDGET = 32 * 1024


# The whole line but its optional parts, as one template: the line is made with
# a single ``%`` on bytes, from values that are bytes already.
_LINE = (
    b'%smethod=%s path="%s" host=%s request_id=%s fwd="%s" dyno=%s '
    b"connect=%s service=%s status=%d bytes=%d protocol=%s%s"
)


def format_record(
    code: HCode | None,
    method: bytes,
    path: bytes,
    host: bytes,
    request_id: bytes,
    fwd: bytes,
    dyno: bytes,
    connect_ms: int | None,
    service_ms: int | None,
    status: int,
    nbytes: int,
    protocol: bytes = b"http",
    cause: str | None = None,
    sock: str | None = None,
) -> bytes:
    """One router log line as UTF-8; ``None`` times print as empty values.

    The text arguments are UTF-8 already (see :func:`header_text` for values
    taken from a request).  ``protocol`` is the scheme the request came in
    with; ``cause`` (after ``desc``) says what was wrong with a refused
    request; ``sock`` (last) names the side whose socket ended an exchange
    early.
    """
    if code is None:
        head = b"at=info "
    else:
        head = f'at={code.level.value} code={code.code} desc="{code.desc}" '.encode()
    if cause is not None:
        head += b'cause="%s" ' % cause.encode()
    # Quotes inside quoted values would let a client forge fields.
    return _LINE % (
        head, method, path.replace(b'"', b"%22"), host, request_id,
        fwd.replace(b'"', b"%22"), dyno,
        b"" if connect_ms is None else b"%dms" % connect_ms,
        b"" if service_ms is None else b"%dms" % service_ms,
        status, nbytes, protocol,
        b"" if sock is None else b" sock=" + sock.encode(),
    )  # fmt: skip


def header_text(raw: bytes) -> bytes:
    """Bytes from a request line or header as the UTF-8 text of the log line.

    Such bytes are Latin-1 (RFC 9110 §5.5); nearly all are ASCII, which is
    the same in both and needs no decoding.
    """
    return raw if raw.isascii() else raw.decode("latin-1").encode()


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
    protocol: str = "http",
    cause: str | None = None,
    sock: str | None = None,
) -> str:
    """:func:`format_record` for text: the same line, as ``str``."""
    return format_record(
        code, method.encode(), path.encode(), host.encode(), request_id.encode(),
        fwd.encode(), dyno.encode(), connect_ms, service_ms, status, nbytes,
        protocol.encode(), cause, sock,
    ).decode()  # fmt: skip


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
        self._batch: list[bytes] = []
        self._size = 0

    def send(self, app: str, line: bytes) -> None:
        """Queue one line for ``app``; never blocks, never raises."""
        name = app.encode()
        if self._loop is None:
            self._send(b"%s\n%s" % (name, line))
            return
        if not self._batch:
            self._loop.call_soon(self.flush)
        # Records and their two halves are all joined by newlines, so the
        # halves are queued apart and the datagram is made by one join.
        self._batch += (name, line)
        self._size += len(name) + len(line) + 2
        if self._size >= _DATAGRAM_BUDGET:
            self.flush()

    def flush(self) -> None:
        """Send the queued lines now."""
        if self._batch:
            batch, self._batch, self._size = self._batch, [], 0
            self._send(b"\n".join(batch))

    def _send(self, data: bytes) -> None:
        # Missing socket, nobody bound, or dynod's queue is full: the request
        # matters more than its log line.
        with contextlib.suppress(OSError):
            self._sock.sendto(data, self._path)

    def close(self) -> None:
        self.flush()
        self._sock.close()
