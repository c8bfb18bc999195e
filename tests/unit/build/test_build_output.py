"""Reading a build's output stream and the files it leaves behind."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from dynod.build.output import MAX_LINE, pump_lines, read_untrusted
from dynod.errors import BuildFailed


def test_pump_lines_splits_and_caps() -> None:
    ours, theirs = socket.socketpair()
    lines: list[str] = []

    async def scenario() -> None:
        pump = asyncio.create_task(pump_lines(ours.fileno(), lines.append))
        theirs.sendall(b"-----> one\r\n       tw")
        await asyncio.sleep(0.05)
        theirs.sendall(b"o\n" + b"x" * (MAX_LINE + 5) + b"\n\xffbad\nlast")
        theirs.close()
        await asyncio.wait_for(pump, 5)

    try:
        asyncio.run(scenario())
    finally:
        ours.close()
        theirs.close()
    assert lines == [
        "-----> one",
        "       two",
        "x" * MAX_LINE,
        "xxxxx",
        "\ufffdbad",
        "last",
    ]


def test_read_untrusted(tmp_path: Path) -> None:
    (tmp_path / "ok").write_text("web: x\n")
    assert read_untrusted(tmp_path / "ok") == "web: x\n"
    assert read_untrusted(tmp_path / "missing") is None

    # A build must not be able to make dynod read host files through a link.
    (tmp_path / "link").symlink_to("/etc/hostname")
    with pytest.raises(BuildFailed, match="other than a regular file"):
        read_untrusted(tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(BuildFailed, match="other than a regular file"):
        read_untrusted(tmp_path / "fifo")
    (tmp_path / "big").write_bytes(b"x" * 101)
    with pytest.raises(BuildFailed, match="larger than 100 bytes"):
        read_untrusted(tmp_path / "big", limit=100)
