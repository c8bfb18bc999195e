"""Per-app log history on disk, capped by size, oldest segment dropped first.

Layout: ``<root>/<app_id>/<seq>.log``, each segment a file of formatted lines
ending in ``\\n``.  A segment is closed once it passes a quarter of the app's
cap, and whole segments are deleted from the oldest while the total is over the
cap, so the kept history is between 3/4 of the cap and the cap.

Writes go straight to the segment's file descriptor (``O_APPEND``), one
``write`` per batch of lines, so whatever :meth:`AppLog.write` returned from is
in the page cache and readable by tails and drains at once.

Reading the last N lines reads segments backwards from the end, so its cost
depends on N, not on the size of the history; a filtered read looks back at
most :data:`SCAN_BYTES`.  It goes through a :class:`HistoryView`, a snapshot
of the segments' sizes that a worker thread may read while the loop appends.
Drains read forwards from a :class:`Position` (segment number, byte offset)
they persist.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dynod.logs.events import line_picker

_CHUNK = 64 * 1024
# How far back ``logs -n`` looks for lines that pass its filters.
SCAN_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, order=True)
class Position:
    """A point in an app's history: just before byte ``offset`` of segment ``seq``."""

    seq: int
    offset: int


def _segment_name(seq: int) -> str:
    return f"{seq:012d}.log"


class AppLog:
    """The on-disk history of one app."""

    def __init__(self, directory: Path, cap_bytes: int) -> None:
        self.directory = directory
        self.cap_bytes = max(cap_bytes, 4)
        directory.mkdir(parents=True, exist_ok=True)
        self._seqs = sorted(int(p.stem) for p in directory.glob("*.log"))
        if not self._seqs:
            self._seqs = [1]
        self._sizes = {s: self._stat(s) for s in self._seqs}
        self._fd = self._open(self._seqs[-1])
        self._mend_torn_tail()

    # Writing

    def write(self, data: bytes) -> None:
        """Append whole lines (``data`` ends with a newline) in one write."""
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._sizes[self._seqs[-1]] += len(data)
        if self._sizes[self._seqs[-1]] >= self.cap_bytes // 4:
            self._rotate()

    def append(self, line: str) -> None:
        self.write(line.encode() + b"\n")

    def flush(self) -> None:
        """Nothing to do: every write goes to the file at once."""

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _open(self, seq: int) -> int:
        path = self.directory / _segment_name(seq)
        return os.open(
            path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
        )

    def _stat(self, seq: int) -> int:
        try:
            return (self.directory / _segment_name(seq)).stat().st_size
        except FileNotFoundError:
            return 0

    def _mend_torn_tail(self) -> None:
        # A crash mid-write can leave a last line without its newline; end it so
        # the next batch does not glue onto it.
        size = self._sizes[self._seqs[-1]]
        if not size:
            return
        fd = self._rd(self._seqs[-1])
        try:
            last = os.pread(fd, 1, size - 1)
        finally:
            os.close(fd)
        if last != b"\n":
            self.write(b"\n")

    def _rd(self, seq: int) -> int:
        return os.open(self.directory / _segment_name(seq), os.O_RDONLY | os.O_CLOEXEC)

    def _rotate(self) -> None:
        os.close(self._fd)
        seq = self._seqs[-1] + 1
        self._seqs.append(seq)
        self._sizes[seq] = 0
        self._fd = self._open(seq)
        # Drop whole segments from the oldest until the closed ones fit 3/4 of the cap.
        closed = sum(self._sizes[s] for s in self._seqs[:-1])
        while closed > self.cap_bytes - self.cap_bytes // 4 and len(self._seqs) > 1:
            oldest = self._seqs.pop(0)
            closed -= self._sizes.pop(oldest)
            (self.directory / _segment_name(oldest)).unlink(missing_ok=True)

    # Reading forwards (drains)

    def start(self) -> Position:
        return Position(self._seqs[0], 0)

    def end(self) -> Position:
        return Position(self._seqs[-1], self._sizes[self._seqs[-1]])

    def backlog(self, pos: Position) -> int:
        """Bytes between ``pos`` and the end of the history."""
        pos = max(pos, self.start())
        ahead = sum(self._sizes[s] for s in self._seqs if s >= pos.seq)
        return ahead - pos.offset

    def read(self, pos: Position, limit: int) -> tuple[bytes, Position]:
        """Whole lines from ``pos``, at most about ``limit`` bytes, and where they end.

        A position in a segment already deleted reads from the oldest kept one.
        Returns ``b""`` at the end of the history.
        """
        pos = max(pos, self.start())
        while True:
            size = self._sizes.get(pos.seq, 0)
            if pos.offset < size:
                break
            later = [s for s in self._seqs if s > pos.seq]
            if not later:
                return b"", pos
            pos = Position(later[0], 0)
        fd = self._rd(pos.seq)
        try:
            data = os.pread(fd, min(limit, size - pos.offset), pos.offset)
        finally:
            os.close(fd)
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            # One line longer than the limit: read up to its end.
            fd = self._rd(pos.seq)
            try:
                data = os.pread(fd, size - pos.offset, pos.offset)
            finally:
                os.close(fd)
            cut = data.find(b"\n") + 1 or len(data)
        return data[:cut], Position(pos.seq, pos.offset + cut)

    def skip_to(self, pos: Position, keep: int) -> tuple[Position, int]:
        """Move ``pos`` forwards so at most about ``keep`` bytes lie ahead of it.

        Returns the new position (at a line start) and how many lines were
        skipped over, counted exactly.
        """
        skipped = 0
        while self.backlog(pos) > keep:
            data, after = self.read(pos, _CHUNK * 16)
            if not data:
                break
            over = self.backlog(pos) - keep
            if len(data) > over:
                # Stop at the first line start past the overflow.  The data
                # may come from a later segment than ``pos`` names (``pos``
                # was at the end of its own): count from where it was read.
                cut = data.find(b"\n", over - 1) + 1 or len(data)
                start = after.offset - len(data)
                data, after = data[:cut], Position(after.seq, start + cut)
            skipped += data.count(b"\n")
            pos = after
        return pos, skipped

    # Reading backwards (``logs -n``)

    def snapshot(self) -> HistoryView:
        """The history as written so far, to be read on any thread.

        Call it on the thread that writes.  The view reads only bytes written
        before the call, so a concurrent append never shows through half done.
        """
        return HistoryView(
            self.directory, tuple((s, self._sizes[s]) for s in self._seqs)
        )

    def tail(
        self,
        n: int,
        source: str | None = None,
        dyno: str | None = None,
        ptype: str | None = None,
    ) -> list[str]:
        """The last ``n`` lines passing the filters, oldest first."""
        return self.snapshot().last(n, source, dyno, ptype)


@dataclass(frozen=True)
class HistoryView:
    """An app's history up to a fixed end: ``(segment, size)`` pairs, oldest first.

    It shares no state with the writer and holds no file open, so a worker
    thread may read it while the event loop appends.  A segment the cap deletes
    meanwhile reads as empty: the view then ends where the kept history starts.
    """

    directory: Path
    segments: tuple[tuple[int, int], ...]

    def last(
        self,
        n: int,
        source: str | None = None,
        dyno: str | None = None,
        ptype: str | None = None,
        scan_bytes: int = SCAN_BYTES,
    ) -> list[str]:
        """The last ``n`` lines passing the filters, oldest first.

        At most about ``scan_bytes`` of history are read back from the end, so a
        filter that matches little costs a bounded read; older lines are not
        searched.
        """
        if n <= 0:
            return []
        pick = line_picker(source, dyno, ptype)
        found: list[list[str]] = []
        count = scanned = 0
        for seq, size in reversed(self.segments):
            path = self.directory / _segment_name(seq)
            for block in _blocks_backwards(path, size):
                lines = pick(block, n - count)
                if lines:
                    found.append(lines)
                    count += len(lines)
                scanned += len(block)
                if count >= n or scanned >= scan_bytes:
                    return [line for lines in reversed(found) for line in lines]
        return [line for lines in reversed(found) for line in lines]


def _blocks_backwards(path: Path, size: int) -> Iterator[bytes]:
    """The first ``size`` bytes of a file as blocks of whole lines, last block first.

    Blocks are about 64 KiB; a line longer than that comes whole in a bigger one.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        pos, rest = size, b""
        while pos > 0:
            start = max(0, pos - _CHUNK)
            data = os.pread(fd, pos - start, start) + rest
            pos = start
            # Up to the first newline is the end of a line that begins further
            # back in the file: it goes with the next chunk read.
            cut = data.find(b"\n") + 1 if start > 0 else 0
            if start > 0 and cut == 0:
                rest, block = data, b""
            else:
                rest, block = data[:cut], data[cut:]
            if block:
                yield block
    finally:
        os.close(fd)


class LogStore:
    """Every app's history, opened lazily.

    ``cap_for`` may give an app its own cap (bytes); otherwise ``cap_bytes``.
    """

    def __init__(
        self,
        root: Path,
        cap_bytes: int,
        cap_for: Callable[[str], int | None] | None = None,
    ) -> None:
        self.root = root
        self.cap_bytes = cap_bytes
        self._cap_for = cap_for
        self._logs: dict[str, AppLog] = {}

    def get(self, app_id: str) -> AppLog:
        log = self._logs.get(app_id)
        if log is None:
            cap = (self._cap_for(app_id) if self._cap_for else None) or self.cap_bytes
            log = self._logs[app_id] = AppLog(self.root / app_id, cap)
        return log

    def flush(self) -> None:
        for log in self._logs.values():
            log.flush()

    def remove(self, app_id: str) -> None:
        log = self._logs.pop(app_id, None)
        if log is not None:
            log.close()
        shutil.rmtree(self.root / app_id, ignore_errors=True)

    def close(self) -> None:
        for log in self._logs.values():
            log.close()
        self._logs.clear()
