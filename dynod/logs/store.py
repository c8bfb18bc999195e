"""Per-app log history on disk, capped by size, oldest segment dropped first.

Layout: ``<root>/<app_id>/<seq>.log``, each segment a file of formatted lines.
A segment is closed once it passes a quarter of the app's cap, and whole
segments are deleted from the oldest while the total is over the cap, so the
kept history is between 3/4 of the cap and the cap.  Reading the last N lines
reads segments backwards from the end, so its cost depends on N, not on the
size of the history.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from dynod.logs.events import matches

_CHUNK = 64 * 1024


class AppLog:
    """The on-disk history of one app.  Appends are buffered; call flush()."""

    def __init__(self, directory: Path, cap_bytes: int) -> None:
        self.directory = directory
        self.cap_bytes = cap_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._segments = sorted(directory.glob("*.log"))
        if not self._segments:
            self._segments = [directory / f"{1:012d}.log"]
        self._file = self._segments[-1].open("ab")
        self._size = self._file.tell()
        self._total = sum(p.stat().st_size for p in self._segments[:-1])

    def append(self, line: str) -> None:
        data = line.encode() + b"\n"
        self._file.write(data)
        self._size += len(data)
        if self._size >= self.cap_bytes // 4:
            self._rotate()

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def _rotate(self) -> None:
        self._file.close()
        self._total += self._size
        seq = int(self._segments[-1].stem) + 1
        self._segments.append(self.directory / f"{seq:012d}.log")
        self._file = self._segments[-1].open("ab")
        self._size = 0
        while (
            self._total > self.cap_bytes - self.cap_bytes // 4
            and len(self._segments) > 1
        ):
            oldest = self._segments.pop(0)
            self._total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)

    def tail(
        self,
        n: int,
        source: str | None = None,
        dyno: str | None = None,
        ptype: str | None = None,
    ) -> list[str]:
        """The last ``n`` lines passing the filters, oldest first."""
        self.flush()
        found: list[str] = []
        for segment in reversed(list(self._segments)):
            for line in _lines_backwards(segment):
                if matches(line, source, dyno, ptype):
                    found.append(line)
                    if len(found) >= n:
                        return found[::-1]
        return found[::-1]


def _lines_backwards(path: Path) -> Iterator[str]:
    """A file's lines from the last to the first, read in 64 KiB chunks."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        pos = os.fstat(fd).st_size
        rest = b""
        while pos > 0:
            start = max(0, pos - _CHUNK)
            chunk = os.pread(fd, pos - start, start) + rest
            pos = start
            parts = chunk.split(b"\n")
            rest = parts[0]
            for part in reversed(parts[1:]):
                if part:
                    yield part.decode("utf-8", "replace")
        if rest:
            yield rest.decode("utf-8", "replace")
    finally:
        os.close(fd)


class LogStore:
    """Every app's history, opened lazily."""

    def __init__(self, root: Path, cap_bytes: int) -> None:
        self.root = root
        self.cap_bytes = cap_bytes
        self._logs: dict[str, AppLog] = {}

    def get(self, app_id: str) -> AppLog:
        log = self._logs.get(app_id)
        if log is None:
            log = self._logs[app_id] = AppLog(self.root / app_id, self.cap_bytes)
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
