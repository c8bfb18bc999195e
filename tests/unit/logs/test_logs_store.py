"""The on-disk history: batched writes, forward reads for drains, skipping,
filtered reads backwards from any thread."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

from dynod.logs.events import line_picker, matches
from dynod.logs.store import AppLog, HistoryView, Position


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


def test_logs_skip_from_the_end_of_a_segment_counts_each_line_once(
    tmp_path: Path,
) -> None:
    # A segment closes at a quarter of the cap: 4000 bytes here.
    log = AppLog(tmp_path, cap_bytes=16_000)
    log.write(_lines(200))
    assert len(list(tmp_path.glob("*.log"))) == 2
    log.write(_lines(100, 200))
    # A drain that read the whole first segment stands at its very end; what
    # follows is in the next one.
    _, pos = log.read(log.start(), 1 << 20)
    assert pos == Position(1, len(_lines(200)))
    pos, skipped = log.skip_to(pos, keep=500)
    rest, _ = log.read(pos, 1 << 20)
    assert rest.startswith(b"T app[web.1]: line ")
    assert skipped + rest.count(b"\n") == 100
    assert int(rest.split(b"\n", 1)[0].rsplit(b" ", 1)[1]) == 200 + skipped


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


_FILTER_LINES = [
    "2026-12-03T18:12:23.123456+00:00 app[web.1]: hello",
    "2026-12-03T18:12:23.123456+00:00 app[web.12]: hello",
    "2026-12-03T18:12:23.123456+00:00 app[webby.1]: hello",
    "2026-12-03T18:12:23.123456+00:00 app[web]: bare type",
    "2026-12-03T18:12:23.123456+00:00 dynod[web.1]: State changed from up to down",
    "2026-12-03T18:12:23.123456+00:00 dynod[router]: at=info path=/",
    "2026-12-03T18:12:23.123456+00:00 dynod[api]: Release v3 created by root",
    "2026-12-03T18:12:23.123456+00:00 app[worker.2]: says dynod[router]: fake",
    "2026-12-03T18:12:23.123456+00:00 app[run.1]: x app[web.1]: fake",
    " app[web.1]: no timestamp",
    "T\tx app[web.1]: tab in the timestamp",
    "T app[web.1] missing colon",
    "T app[web.1]:no space",
    "garbage",
]
_FILTERS = [
    (source, dyno, ptype)
    for source in (None, "app", "dynod")
    for dyno in (None, "web", "web.1", "router", "worker.2", "web.2")
    for ptype in (None, "web", "worker", "router")
]


def test_logs_picker_answers_as_the_filter_does() -> None:
    block = "".join(x + "\n" for x in _FILTER_LINES).encode()
    for source, dyno, ptype in _FILTERS:
        want = [x for x in _FILTER_LINES if matches(x, source, dyno, ptype)]
        pick = line_picker(source, dyno, ptype)
        assert pick(block, 100) == want, (source, dyno, ptype)
        assert pick(block, 1) == want[-1:], (source, dyno, ptype)


def test_logs_view_reads_what_was_written_before_it(tmp_path: Path) -> None:
    log = AppLog(tmp_path, cap_bytes=1 << 20)
    log.write(_lines(100))
    view = log.snapshot()
    log.write(_lines(100, 100))
    assert view.last(2) == ["T app[web.1]: line 98", "T app[web.1]: line 99"]
    assert log.tail(1) == ["T app[web.1]: line 199"]


def test_logs_view_read_on_a_thread_while_the_log_grows_and_rotates(
    tmp_path: Path,
) -> None:
    log = AppLog(tmp_path, cap_bytes=400_000)
    log.write(_lines(5000))
    views: queue.Queue[tuple[HistoryView, int] | None] = queue.Queue()
    views.put((log.snapshot(), 4999))
    results: list[tuple[list[str], int]] = []

    def read() -> None:
        while (item := views.get()) is not None:
            view, last = item
            results.append((view.last(10**6, source="app"), last))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(5000, 60_000, 500):
            log.write(_lines(500, i))
            views.put((log.snapshot(), i + 499))
            # Give the reader a turn, so reads overlap writes and rotations.
            time.sleep(0.002)
    finally:
        views.put(None)
        reader.join()
    assert len(results) == 111
    for got, last in results:
        # Whole lines only, consecutive, ending where the view ends: nothing
        # written after it, nothing torn, whatever the cap deleted meanwhile
        # (a view whose every segment went reads as empty).
        numbers = [int(x.rsplit(" ", 1)[1]) for x in got]
        assert all(x.startswith("T app[web.1]: line ") for x in got)
        assert numbers == list(range(last - len(numbers) + 1, last + 1))
    assert sum(1 for got, _ in results if got) >= 10


def test_logs_filtered_read_looks_back_a_bounded_way(tmp_path: Path) -> None:
    log = AppLog(tmp_path, cap_bytes=64 << 20)
    log.write(b"T dynod[api]: old one\n")
    log.write(_lines(200_000))
    view = log.snapshot()
    assert view.last(10, source="dynod") == ["T dynod[api]: old one"]
    assert view.last(10, source="dynod", scan_bytes=1 << 20) == []
    # Unfiltered reads stop at n lines, far inside the bound.
    assert len(view.last(1500, scan_bytes=1 << 20)) == 1500
