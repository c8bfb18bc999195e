"""The spawner's socket protocol: one JSON object per SEQPACKET datagram.

File descriptors travel beside a message with SCM_RIGHTS; the receiver owns
the copies it gets.  Requests carry a ``seq`` that their replies repeat;
messages without a ``seq`` are events (``{"op": "exit", ...}``).
"""

from __future__ import annotations

import array
import json
import socket
from collections.abc import Sequence
from typing import Any

MAX_MESSAGE = 1 << 20
MAX_FDS = 16


def send(sock: socket.socket, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
    """Send one message (blocking until the kernel takes it)."""
    data = dumps(message)
    if fds:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
        sock.sendmsg([data], ancillary)
    else:
        sock.send(data)


def recv(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """One message and its fds; ``(None, [])`` when the peer has closed."""
    data, ancdata, _, _ = sock.recvmsg(
        MAX_MESSAGE, socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)
    )
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received = array.array("i")
            received.frombytes(
                payload[: len(payload) - len(payload) % received.itemsize]
            )
            fds.extend(received)
    if not data:
        return None, fds
    return json.loads(data), fds


def dumps(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()
