"""The on-disk history: batched writes, forward reads for drains, skipping."""

from __future__ import annotations

from pathlib import Path

from dynod.logs.store import AppLog, Position


def _lines(n: int, start: int = 0) -> bytes:
    return b"".join(b"T app[web.1]: line %d\n" % i for i in range(start, start + n))


def test_logs_read_forward_across_segments_returns_every_line_once(
    tmp_path: Path,
) -> None:
    log = AppLog(tmp_path, cap_bytes=4 << 20)
    for i in range(0, 50_000, 1000):
        log.write(_lines(1000, i))
    assert len(list(tmp_path.glob("*.log"))) > 1
    pos, got = Position(0, 0), b""
    while True:
        data, pos = log.read(pos, 7000)
        if not data:
            break
        assert data.endswith(b"\n")
        got += data
    assert got == _lines(50_000)
    assert pos == log.end()
    assert log.backlog(pos) == 0


def test_logs_skip_keeps_at_most_the_buffer_and_counts_exactly(tmp_path: Path) -> None:
    log = AppLog(tmp_path, cap_bytes=1 << 20)
    log.write(_lines(10_000))
    pos, skipped = log.skip_to(log.start(), keep=1000)
    assert log.backlog(pos) <= 1000
    rest, _ = log.read(pos, 1 << 20)
    kept = rest.count(b"\n")
    assert skipped + kept == 10_000
    # The first line kept is whole: skipping stops at a line start.
    assert rest.startswith(b"T app[web.1]: line ")


def test_logs_cap_drops_oldest_segments(tmp_path: Path) -> None:
    log = AppLog(tmp_path, cap_bytes=100_000)
    for i in range(0, 20_000, 500):
        log.write(_lines(500, i))
    total = sum(p.stat().st_size for p in tmp_path.glob("*.log"))
    assert total <= 100_000 + 20_000
    assert log.tail(2) == ["T app[web.1]: line 19998", "T app[web.1]: line 19999"]
    # A cursor in a deleted segment reads on from the oldest kept one.
    data, _ = log.read(Position(1, 0), 100)
    assert data.startswith(b"T app[web.1]: line ")


def test_logs_torn_last_line_is_ended_on_reopen(tmp_path: Path) -> None:
    log = AppLog(tmp_path, cap_bytes=1 << 20)
    log.write(b"T app[web.1]: whole\n")
    log.close()
    with (tmp_path / f"{1:012d}.log").open("ab") as f:
        f.write(b"T app[web.1]: tor")
    log = AppLog(tmp_path, cap_bytes=1 << 20)
    log.write(b"T app[web.1]: next\n")
    assert log.tail(10) == [
        "T app[web.1]: whole",
        "T app[web.1]: tor",
        "T app[web.1]: next",
    ]
