"""The hub: batched dyno output, order, tails, rate limiting."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from dynod.logs.hub import LogHub, Tail
from dynod.logs.store import LogStore

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00"


class Clock:
    def __init__(self) -> None:
        self.now = 1796321543.0

    def __call__(self) -> float:
        return self.now


def test_logs_output_batch_keeps_order_with_platform_lines(tmp_path: Path) -> None:
    hub = LogHub(LogStore(tmp_path, 1 << 20))
    hub.emit_output("d1", "a", "web.1", b"one")
    hub.emit_output("d2", "a", "web.2", b"two")
    hub.emit("a", "dynod", "web.1", "State changed from up to down")
    hub.emit_output("d1", "a", "web.1", b"three")
    hub.flush()
    lines = hub.recent("a", 10)
    assert [line.split(" ", 1)[1] for line in lines] == [
        "app[web.1]: one",
        "app[web.2]: two",
        "dynod[web.1]: State changed from up to down",
        "app[web.1]: three",
    ]
    assert all(re.match(STAMP, line) for line in lines)


def test_logs_long_output_lines_are_split(tmp_path: Path) -> None:
    hub = LogHub(LogStore(tmp_path, 1 << 20))
    hub.emit_output("d1", "a", "web.1", b"x" * 25000)
    hub.flush()
    assert [len(line.split(": ", 1)[1]) for line in hub.recent("a", 10)] == [
        10000,
        10000,
        5000,
    ]


def test_logs_tail_gets_output_lines(tmp_path: Path) -> None:
    async def main() -> list[str]:
        hub = LogHub(LogStore(tmp_path, 1 << 20))
        tail = hub.subscribe("a", source="app")
        hub.emit_output("d1", "a", "web.1", b"hello")
        hub.emit("a", "dynod", "api", "not for this tail")
        await asyncio.sleep(0)
        tail.close()
        return [line async for line in tail.lines()]

    got = asyncio.run(main())
    assert len(got) == 1 and got[0].endswith(" app[web.1]: hello")


def test_logs_flood_is_rate_limited_with_a_notice(tmp_path: Path) -> None:
    clock = Clock()
    hub = LogHub(LogStore(tmp_path, 1 << 20), rate_lines=100, clock=clock)

    async def main() -> None:
        # 300 lines in one loop iteration: one batch, kept whole; the bucket
        # (100 lines) goes negative and the next lines are dropped.
        for i in range(300):
            hub.emit_output("d1", "a", "web.1", b"a%d" % i)
        await asyncio.sleep(0)
        for i in range(50):
            hub.emit_output("d1", "a", "web.1", b"b%d" % i)
        await asyncio.sleep(0)
        # Three seconds on, the bucket is full again: lines pass, the loss is told.
        clock.now += 3
        hub.emit_output("d1", "a", "web.1", b"c0")
        await asyncio.sleep(0)
        hub.emit_output("d1", "a", "web.1", b"c1")
        await asyncio.sleep(0)
        hub.close()

    asyncio.run(main())
    lines = LogHub(LogStore(tmp_path, 1 << 20)).recent("a", 1000)
    assert sum(1 for line in lines if ": a" in line) == 300
    assert not any(": b" in line for line in lines)
    notice = [line for line in lines if "L12" in line]
    assert len(notice) == 1
    assert "dynod[web.1]: Error L12 (Log rate limit): 51 lines dropped" in notice[0]
    assert lines[-1].endswith("app[web.1]: c1")


def _tail_run(tail_limit: int, script: list[tuple[str, int]]) -> list[str]:
    """Drive one tail: ("emit", n) offers n numbered lines, ("read", n) reads n."""

    async def main() -> list[str]:
        tail = Tail(None, None, None, limit=tail_limit)
        reader = tail.lines()
        got: list[str] = []
        sent = 0
        for action, n in script:
            if action == "emit":
                for _ in range(n):
                    tail.offer(f"T app[web.1]: n{sent}")
                    sent += 1
            elif action == "read":
                for _ in range(n):
                    got.append(await anext(reader))
            else:
                tail.close()
                got.extend([line async for line in reader])
        return got

    return asyncio.run(main())


def _dropped(line: str) -> int:
    m = re.search(r"dynod\[logs\]: Error L11 \(Tail buffer overflow\) -> This tail "
                  r"session dropped (\d+) messages since \S+$", line)  # fmt: skip
    assert m, line
    return int(m.group(1))


def test_logs_tail_close_keeps_every_queued_line_and_tells_the_loss() -> None:
    got = _tail_run(10, [("emit", 17), ("close", 0)])
    # All ten queued lines, then the notice for the seven that did not fit.
    assert got[:10] == [f"T app[web.1]: n{i}" for i in range(10)]
    assert len(got) == 11 and _dropped(got[10]) == 7


def test_logs_tail_notice_sits_where_the_lines_went_missing() -> None:
    # Full, then lines lost, then room again: the notice comes before the first
    # line queued after the gap, not before older lines.
    got = _tail_run(4, [("emit", 6), ("read", 3), ("emit", 3), ("close", 0)])
    assert got[:4] == [f"T app[web.1]: n{i}" for i in range(4)]
    assert _dropped(got[4]) == 2
    assert got[5:7] == ["T app[web.1]: n6", "T app[web.1]: n7"]
    # n8 found the queue full again (the notice takes a place): told at the end.
    assert len(got) == 8 and _dropped(got[7]) == 1


def test_logs_tail_reader_that_caught_up_is_told_without_new_lines() -> None:
    got = _tail_run(3, [("emit", 5), ("read", 4)])
    assert got[:3] == [f"T app[web.1]: n{i}" for i in range(3)]
    assert _dropped(got[3]) == 2


def test_logs_tail_counts_only_lines_passing_its_filter(tmp_path: Path) -> None:
    async def main() -> list[str]:
        hub = LogHub(LogStore(tmp_path, 1 << 20))
        tail = hub.subscribe("a", dyno="web.2")
        tail.limit = 2
        for i in range(5):
            hub.emit("a", "app", "web.1", f"other {i}")
            hub.emit("a", "app", "web.2", f"mine {i}")
        hub.close()
        return [line async for line in tail.lines()]

    got = asyncio.run(main())
    assert [x.split(" ", 1)[1] for x in got[:2]] == [
        "app[web.2]: mine 0",
        "app[web.2]: mine 1",
    ]
    assert len(got) == 3 and _dropped(got[2]) == 3
