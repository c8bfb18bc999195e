"""The hub: batched dyno output, order, tails, rate limiting."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from dynod.logs.hub import LogHub
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
