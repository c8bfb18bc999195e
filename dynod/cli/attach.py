"""The terminal side of ``dynoctl run``: a WebSocket to a one-off dyno.

Protocol (served at the dyno's ``attach_url``):

- binary frames carry stdin (client to server) and output (server to client);
- the client sends the text frame ``{"resize": [cols, rows]}`` when its
  terminal changes size, and ``{"eof": true}`` when its stdin ends (so that
  ``dynoctl run -- cat < file`` finishes);
- the server sends the text frame ``{"exit_status": N}`` last; the client then
  closes (the server waits for that, so nothing in flight is lost).

When stdin is a terminal it is put in raw mode for the session (every key,
Ctrl-C included, goes to the dyno) and always restored afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import termios
import threading
import tty
from collections.abc import Iterator
from typing import IO

import aiohttp

from dynod.cli.client import ApiError, ApiUnreachable, Client, broken, unreachable

_READ_SIZE = 65536


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Put the terminal ``fd`` in raw mode; restore its settings on the way out."""
    saved = termios.tcgetattr(fd)
    try:
        # TCSANOW, not setraw's default TCSAFLUSH: keys typed while the dyno
        # was starting are sent to it instead of being thrown away.
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def terminal_size() -> tuple[int, int]:
    """(columns, rows) of the controlling terminal, 80x24 when unknown."""
    size = shutil.get_terminal_size((80, 24))
    return size.columns, size.lines


def start_reader(
    loop: asyncio.AbstractEventLoop, source: IO[bytes], queue: asyncio.Queue[bytes]
) -> None:
    """Copy ``source`` into ``queue`` from a daemon thread; ``b""`` marks its end.

    A thread, because stdin may be a regular file, which the event loop
    cannot watch; daemon, because a read blocked on a terminal must not keep
    the process alive once the dyno has exited.
    """
    # Read the file descriptor itself when there is one: a daemon thread blocked
    # inside a buffered reader holds its lock, and the interpreter aborts at
    # exit when it finds that lock taken.
    try:
        raw: int | None = source.fileno()
    except (AttributeError, OSError, ValueError):
        raw = None

    def pump() -> None:
        while True:
            try:
                if raw is not None:
                    data = os.read(raw, _READ_SIZE)
                else:
                    data = (
                        source.read1(_READ_SIZE)
                        if hasattr(source, "read1")
                        else source.read(_READ_SIZE)
                    )
            except (OSError, ValueError):
                data = b""
            try:
                loop.call_soon_threadsafe(queue.put_nowait, data)
            except RuntimeError:
                return  # the loop is closed: the session is over
            if not data:
                return

    threading.Thread(target=pump, name="dynoctl-stdin", daemon=True).start()


async def send_input(
    ws: aiohttp.ClientWebSocketResponse, queue: asyncio.Queue[bytes]
) -> None:
    """Forward stdin to the dyno, then announce its end."""
    while data := await queue.get():
        await ws.send_bytes(data)
    await ws.send_str(json.dumps({"eof": True}))


async def attach(
    client: Client,
    url: str,
    *,
    stdin: IO[bytes],
    stdout: IO[bytes],
    tty_mode: bool,
) -> int:
    """Join the dyno at ``url`` until it exits; return its exit status.

    Raises ApiError when the API refuses the WebSocket, ApiUnreachable when
    the connection fails or closes before the exit status arrives.
    """
    session = await client.session()
    try:
        ws = await session.ws_connect(client.url(url), heartbeat=30.0)
    except aiohttp.WSServerHandshakeError as exc:
        raise ApiError(
            f"The dynod API refused to attach to the dyno ({exc.status} "
            f"{exc.message}); check `dynoctl ps` and try again.",
            status=exc.status,
            error_id="",
        ) from exc
    except aiohttp.ClientConnectorError as exc:
        raise unreachable(client.endpoint, exc.os_error) from exc

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    start_reader(loop, stdin, queue)
    sender = asyncio.create_task(send_input(ws, queue))

    # Tell the dyno the window size now and whenever it changes.
    async def resize() -> None:
        await ws.send_str(json.dumps({"resize": list(terminal_size())}))

    if tty_mode:
        await resize()
        loop.add_signal_handler(signal.SIGWINCH, lambda: loop.create_task(resize()))

    exit_status: int | None = None
    try:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                stdout.write(msg.data)
                stdout.flush()
            elif msg.type == aiohttp.WSMsgType.TEXT:
                control = json.loads(msg.data)
                if isinstance(control, dict) and "exit_status" in control:
                    exit_status = int(control["exit_status"])
                    # The session is over; closing is the client's turn.
                    break
            elif msg.type == aiohttp.WSMsgType.ERROR:
                raise broken(client.endpoint, "GET", url, ws.exception() or OSError())
    finally:
        if tty_mode:
            loop.remove_signal_handler(signal.SIGWINCH)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
            await sender
        await ws.close()

    if exit_status is None:
        raise ApiUnreachable(
            "The connection to the dyno closed before it reported an exit status; "
            "see `dynoctl logs` for what happened to it."
        )
    return exit_status


def run_attached(client: Client, url: str, *, tty_mode: bool) -> int:
    """Attach this process's stdin and stdout to the dyno; return its exit status."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout.flush()
    session = attach(client, url, stdin=stdin, stdout=stdout, tty_mode=tty_mode)
    if not tty_mode:
        return client.run(session)
    with raw_terminal(stdin.fileno()):
        return client.run(session)
