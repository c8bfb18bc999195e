"""Dyno output: pipes read in the event loop, cut into log lines.

A line is what ends with a newline; one longer than :data:`MAX_LINE` bytes is
cut into pieces of at most that size (:func:`cut`, never inside a UTF-8
character), so a dyno that never writes a newline cannot make the daemon buffer
without bound.  What is left at end of file is a last line.

Speed and fairness: each wake-up reads at most :data:`_READS_PER_WAKE` chunks of
:data:`_READ_SIZE` bytes and splits them with one ``bytes.split``, then returns
to the event loop, so a dyno that floods its pipe gets its turn like every other
reader instead of holding the loop.  The pipe is grown to
:data:`PIPE_SIZE` (``F_SETPIPE_SZ``, pipe(7)) so a writer rarely waits for the
next turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import select
from collections.abc import Callable

MAX_LINE = 10000
_READ_SIZE = 256 * 1024
_READS_PER_WAKE = 4
# pipe(7): the default /proc/sys/fs/pipe-max-size, which root may use.
PIPE_SIZE = 1024 * 1024
# How long drain() waits for a pipe whose writers should all be gone.
DRAIN_TIMEOUT = 1.0


def boundary(data: bytes, limit: int) -> int:
    """Where to cut ``data`` to keep at most ``limit`` bytes: ``limit``, or up
    to three bytes earlier so as not to split a UTF-8 character."""
    for end in range(limit, max(limit - 3, 1) - 1, -1):
        if end >= len(data) or data[end] & 0xC0 != 0x80:
            return end
    # Not UTF-8 after all (a run of continuation bytes): cut at the limit.
    return limit


def cut(line: bytes, limit: int = MAX_LINE) -> list[bytes]:
    """``line`` in pieces of at most ``limit`` bytes, cut between characters."""
    pieces: list[bytes] = []
    while len(line) > limit:
        end = boundary(line, limit)
        pieces.append(line[:end])
        line = line[end:]
    pieces.append(line)
    return pieces


class LineSplitter:
    """Turns a byte stream into lines of at most ``max_line`` bytes."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._partial = b""

    def feed(self, data: bytes) -> list[bytes]:
        """Complete lines in ``data`` (plus what was held back), without newlines."""
        buffer = self._partial + data if self._partial else data
        lines = buffer.split(b"\n")
        self._partial = lines.pop()
        if lines and max(map(len, lines)) > self.max_line:
            out: list[bytes] = []
            for line in lines:
                out.extend(self._cut(line))
        else:
            out = lines
        # An unterminated run that has reached the limit goes out now.
        while len(self._partial) >= self.max_line:
            end = boundary(self._partial, self.max_line)
            out.append(self._partial[:end])
            self._partial = self._partial[end:]
        return out

    def flush(self) -> list[bytes]:
        """The unterminated remainder, if any, as a last line."""
        rest, self._partial = self._partial, b""
        return [rest] if rest else []

    def _cut(self, line: bytes) -> list[bytes]:
        return cut(line, self.max_line)


class OutputReader:
    """Reads one pipe without blocking and hands each line to ``emit``.

    Owns ``fd``: :meth:`close` (or end of file) closes it.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        emit: Callable[[bytes], None],
    ) -> None:
        self._loop = loop
        self._fd: int | None = fd
        self._emit = emit
        self._splitter = LineSplitter()
        os.set_blocking(fd, False)
        # Not every fd is a pipe (tests use files and sockets): best effort.
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        self._read(until_eof=False)

    def _read(self, until_eof: bool) -> None:
        reads = 0
        while self._fd is not None:
            if not until_eof and reads == _READS_PER_WAKE:
                # Give the other readers (and the rest of dynod) their turn.
                return
            reads += 1
            try:
                data = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                if not until_eof:
                    return
                # Every writer is gone but a writer may still be closing.
                data = self._read_blocking()
            if not data:
                self.close()
                return
            emit = self._emit
            for line in self._splitter.feed(data):
                emit(line)

    def _read_blocking(self) -> bytes:
        """Wait briefly for more; a writer that lingers past that is cut off."""
        assert self._fd is not None
        ready, _, _ = select.select([self._fd], [], [], DRAIN_TIMEOUT)
        return os.read(self._fd, _READ_SIZE) if ready else b""

    def drain(self) -> None:
        """Read to end of file; call only once every writer has exited."""
        self._read(until_eof=True)

    def close(self) -> None:
        if self._fd is None:
            return
        for line in self._splitter.flush():
            self._emit(line)
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = None
