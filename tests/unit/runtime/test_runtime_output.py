"""Line splitting of dyno output."""

from __future__ import annotations

import asyncio
import os

import pytest

from dynod.runtime.output import LineSplitter, OutputReader, cut


def test_runtime_lines_split_on_newlines_across_chunks() -> None:
    s = LineSplitter()
    assert s.feed(b"one\ntw") == [b"one"]
    assert s.feed(b"o\n\nthree") == [b"two", b""]
    assert s.flush() == [b"three"]
    assert s.flush() == []


def test_runtime_long_lines_are_cut() -> None:
    s = LineSplitter(max_line=4)
    assert s.feed(b"abcdefghij\nxy") == [b"abcd", b"efgh", b"ij"]
    # An unterminated run is released as soon as it reaches the limit.
    assert s.feed(b"zzzzz") == [b"xyzz"]
    assert s.flush() == [b"zzz"]


def test_runtime_long_lines_are_cut_between_characters() -> None:
    # "é" is two bytes, "€" three, "𝄞" four: no piece may end inside one.
    for char in ("é", "€", "𝄞"):
        text = ("ab" + char * 7).encode()
        pieces = cut(text, 6)
        assert all(len(p) <= 6 for p in pieces)
        assert [p.decode() for p in pieces]  # each decodes on its own
        assert b"".join(pieces) == text
    s = LineSplitter(max_line=6)
    assert s.feed("abcd€€".encode()) == [b"abcd", "€€".encode()]
    assert s.flush() == []
    # Bytes that are not UTF-8 are cut at the limit, as before.
    assert cut(b"\x80" * 9, 4) == [b"\x80" * 4, b"\x80" * 4, b"\x80"]


def test_runtime_default_limit_is_10000() -> None:
    lines = LineSplitter().feed(b"a" * 25000 + b"\n")
    assert [len(x) for x in lines] == [10000, 10000, 5000]


@pytest.mark.asyncio
async def test_runtime_reader_emits_lines_and_final_partial() -> None:
    r, w = os.pipe()
    got: list[bytes] = []
    reader = OutputReader(asyncio.get_running_loop(), r, got.append)
    os.write(w, b"hello\nwor")
    async with asyncio.timeout(2):
        while not got:
            await asyncio.sleep(0.01)
    os.write(w, b"ld")
    os.close(w)
    reader.drain()
    assert got == [b"hello", b"world"]
    # The reader owns and has closed the read end.
    with pytest.raises(OSError):
        os.fstat(r)
