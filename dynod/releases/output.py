"""Build and release output: kept in a file and streamed to followers live."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path


class OutputLog:
    """Lines of one build (or release phase), appended as they come.

    Followers get every line from the first one, then new lines as they are
    written, until :meth:`close`.  A closed log reads back from its file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lines: list[str] = []
        self._closed = False
        self._changed = asyncio.Event()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def write(self, line: str) -> None:
        self._lines.append(line)
        self._file.write(line + "\n")
        self._file.flush()
        self._changed.set()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._file.close()
            self._changed.set()

    async def follow(self) -> AsyncIterator[str]:
        sent = 0
        while True:
            while sent < len(self._lines):
                yield self._lines[sent]
                sent += 1
            if self._closed:
                return
            self._changed.clear()
            await self._changed.wait()


async def read_finished(path: Path) -> AsyncIterator[str]:
    """The lines of an output log that no daemon is writing any more."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    for line in text.splitlines():
        yield line
