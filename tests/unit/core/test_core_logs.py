import asyncio
from pathlib import Path

from dynod.logs.events import LogEvent, matches, split_line
from dynod.logs.hub import TAIL_QUEUE, LogHub
from dynod.logs.store import AppLog, LogStore


def test_event_format_is_heroku_display_form() -> None:
    line = LogEvent(1796321543.123456, "app", "web.1", "hello").format()
    assert line == "2026-12-03T18:12:23.123456+00:00 app[web.1]: hello"


def test_long_lines_split_at_10000_bytes() -> None:
    pieces = split_line(b"x" * 25000)
    assert [len(p) for p in pieces] == [10000, 10000, 5000]
    assert split_line(b"") == [""]
    # Never inside a character: each piece is text of its own.
    pieces = split_line(("xy" + "€" * 5000).encode())
    assert [len(p.encode()) for p in pieces] == [9998, 5004]
    assert "".join(pieces) == "xy" + "€" * 5000


def test_filters() -> None:
    line = "2026-12-03T18:12:23.123456+00:00 app[web.1]: hello"
    assert matches(line, "app", None, None)
    assert not matches(line, "dynod", None, None)
    assert matches(line, None, "web.1", None)
    assert matches(line, None, "web", None)
    assert not matches(line, None, "web.2", None)
    assert matches(line, None, None, "web")
    assert not matches(line, None, None, "worker")


def test_tail_reads_last_lines_across_segments(tmp_path: Path) -> None:
    log = AppLog(tmp_path, cap_bytes=4000)
    for i in range(500):
        log.append(f"2026-12-03T00:00:00.000000+00:00 app[web.1]: line {i}")
    last = log.tail(3)
    assert [x.rsplit(" ", 1)[1] for x in last] == ["497", "498", "499"]
    # The cap holds: old segments were dropped.
    total = sum(p.stat().st_size for p in tmp_path.glob("*.log"))
    assert total <= 4000 + 100
    assert len(list(tmp_path.glob("*.log"))) > 1
    log.close()


def test_history_survives_reopen(tmp_path: Path) -> None:
    store = LogStore(tmp_path, 1 << 20)
    store.get("a").append("x app[web.1]: one")
    store.close()
    store = LogStore(tmp_path, 1 << 20)
    store.get("a").append("x app[web.1]: two")
    assert store.get("a").tail(10) == ["x app[web.1]: one", "x app[web.1]: two"]
    store.close()


def test_slow_tail_is_told_what_it_missed(tmp_path: Path) -> None:
    async def main() -> list[str]:
        hub = LogHub(LogStore(tmp_path, 1 << 24))
        tail = hub.subscribe("a")
        for i in range(TAIL_QUEUE + 5):
            hub.emit("a", "app", "web.1", f"n{i}")
        got = []
        tail.close()
        async for line in tail.lines():
            got.append(line)
        hub.close()
        return got

    got = asyncio.run(main())
    assert any(
        "L11 (Tail buffer overflow)" in x and "dropped 5 messages" in x for x in got
    )
