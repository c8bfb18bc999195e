"""Moving bytes out of a build dyno: its live output, and the files it leaves.

Everything here treats the build's side as hostile: output lines are capped,
and files the buildpack wrote are opened without following symlinks (a build
could otherwise point ``release.yml`` at a host file and have dynod read it).
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

from dynod.errors import BuildFailed

# Longer lines are split, like the agent does for dyno output.
MAX_LINE = 10_000


async def pump_lines(fd: int, output: Callable[[str], None]) -> None:
    """Pass each line read from ``fd`` to ``output`` until end of file.

    ``fd`` is made non-blocking and read from the event loop; carriage
    returns are dropped and invalid UTF-8 replaced.  The caller closes ``fd``.
    """
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    buffer = b""
    done: asyncio.Future[None] = loop.create_future()

    def emit(raw: bytes) -> None:
        output(raw.rstrip(b"\r").decode("utf-8", errors="replace"))

    def readable() -> None:
        nonlocal buffer
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            # A PTY master reports EIO once the other side is gone.
            if exc.errno != errno.EIO:
                raise
            data = b""
        if not data:
            if buffer:
                emit(buffer)
            buffer = b""
            if not done.done():
                done.set_result(None)
            return
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            while len(line) > MAX_LINE:
                emit(line[:MAX_LINE])
                line = line[MAX_LINE:]
            emit(line)
        while len(buffer) > MAX_LINE:
            emit(buffer[:MAX_LINE])
            buffer = buffer[MAX_LINE:]

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)


def read_untrusted(path: Path, limit: int = 1 << 20) -> str | None:
    """The text of ``path`` if it is a regular file (never a symlink); None if
    it does not exist.

    Raises :class:`BuildFailed` when it is something else or over ``limit``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BuildFailed(
            f"The build left {path.name} as something other than a regular file "
            f"({exc.strerror}): buildpacks must write plain files."
        ) from exc
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BuildFailed(
                f"The build left {path.name} as something other than a regular "
                "file: buildpacks must write plain files."
            )
        data = f.read(limit + 1)
    if len(data) > limit:
        raise BuildFailed(
            f"The build left {path.name} larger than {limit} bytes: keep it small."
        )
    return data.decode("utf-8", errors="replace")
