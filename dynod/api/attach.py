"""Bridging an attached one-off dyno's terminal to a WebSocket client.

Binary frames carry the terminal's bytes both ways; the client sends text frame
``{"resize": [cols, rows]}`` when its window changes and ``{"eof": true}`` when
its stdin ends (without a terminal); the server ends with text frame
``{"exit_status": N}`` and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import socket
import struct
import termios

from aiohttp import WSMsgType, web

from dynod.manager.dynos import Dyno
from dynod.manager.manager import Manager

# How long the server waits for the client to close after the exit status.
CLIENT_CLOSE_WAIT = 5.0


async def bridge(ws: web.WebSocketResponse, manager: Manager, dyno: Dyno) -> None:
    assert dyno.handle is not None and dyno.handle.attach_fd is not None
    fd = dyno.handle.attach_fd
    loop = asyncio.get_running_loop()
    output: asyncio.Queue[bytes | None] = asyncio.Queue()

    def readable() -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            # EIO: the PTY's last writer is gone.
            data = b""
        if not data:
            loop.remove_reader(fd)
            output.put_nowait(None)
        else:
            output.put_nowait(data)

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)

    async def pump_output() -> None:
        while (data := await output.get()) is not None:
            await ws.send_bytes(data)

    async def pump_input() -> None:
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                with contextlib.suppress(OSError):
                    os.write(fd, msg.data)
            elif msg.type is WSMsgType.TEXT:
                _control(fd, msg.data)

    sender = asyncio.ensure_future(pump_output())
    receiver = asyncio.ensure_future(pump_input())
    waiter = asyncio.ensure_future(manager.wait(dyno))
    try:
        await asyncio.wait({waiter, receiver}, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            # The client went away: end the dyno, as Heroku does on disconnect.
            await manager.kill(dyno)
        status = await waiter
        # Everything the dyno wrote before exiting goes out before the status.
        await asyncio.wait_for(sender, timeout=5)
        await ws.send_str(json.dumps({"exit_status": status}))
        # The client closes once it has the status.  Closing first would race
        # with anything it is still sending (its stdin's end, say), and a
        # client whose write fails on a closing connection drops the frames it
        # has not read yet: the output and the status.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(receiver), timeout=CLIENT_CLOSE_WAIT)
        await ws.close()
    finally:
        loop.remove_reader(fd)
        for task in (receiver, sender, waiter):
            task.cancel()
        os.close(fd)


def _control(fd: int, text: str) -> None:
    try:
        message = json.loads(text)
    except ValueError:
        return
    if not isinstance(message, dict):
        return
    if message.get("eof"):
        # The client's stdin ended (no terminal): the dyno reads end-of-file.
        with contextlib.suppress(OSError):
            sock = socket.socket(fileno=os.dup(fd))
            sock.shutdown(socket.SHUT_WR)
            sock.close()
    resize = message.get("resize")
    if isinstance(resize, list) and len(resize) == 2:
        cols, rows = resize
        with contextlib.suppress(OSError, struct.error, TypeError):
            winsize = struct.pack("HHHH", rows, cols, 0, 0)
            fcntl.ioctl(fd, termios.TIOCSWINSZ, winsize)
