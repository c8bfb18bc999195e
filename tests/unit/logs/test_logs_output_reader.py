"""The agent's pipe reader: bounded work per wake-up, every line once."""

from __future__ import annotations

import asyncio
import itertools
import os

import pytest

from dynod.runtime import output
from dynod.runtime.output import OutputReader


def test_logs_reader_yields_to_the_loop_between_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One chunk per wake-up, so taking more (the pipe holds 4) shows.
    monkeypatch.setattr(output, "_READS_PER_WAKE", 1)

    async def main() -> tuple[list[bytes], list[int]]:
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        # More than one wake-up's worth is waiting in the pipe.
        chunk = b"".join(b"%07d\n" % i for i in range(output._READ_SIZE // 8))
        lines: list[bytes] = []
        turns: list[int] = []
        reader = OutputReader(loop, r, lines.append)
        writer = loop.run_in_executor(None, _write_all, w, chunk * 6)

        # Another task keeps getting turns while the pipe is read.
        async def other() -> None:
            while not writer.done() or len(lines) < len(chunk) * 6 // 8:
                turns.append(len(lines))
                await asyncio.sleep(0)

        await asyncio.wait_for(other(), 10)
        reader.close()
        return lines, turns

    lines, turns = asyncio.run(main())
    assert lines == [
        b"%07d" % (i % (output._READ_SIZE // 8)) for i in range(len(lines))
    ]
    assert len(lines) == 6 * (output._READ_SIZE // 8)
    # The reader never took more than its share in one turn.
    steps = [b - a for a, b in itertools.pairwise(turns)]
    assert max(steps) <= output._READS_PER_WAKE * output._READ_SIZE // 8


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.close(fd)
