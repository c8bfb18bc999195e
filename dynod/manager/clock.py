"""The manager's clock: every timer of the dyno lifecycle goes through it.

Back-off before a crashed dyno's restart, the boot timeout, the stop grace,
daily cycling, one-off time-to-live and the memory check all read time and
schedule work here, never on the event loop directly.  :class:`LoopClock` is
the real one; :class:`FakeClock` lets tests move time by hand, so a 20-minute
back-off or a 24-hour cycle is checked in milliseconds.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch (for timestamps users see)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (for deadlines)."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` from the event loop after ``delay`` seconds."""

    async def sleep(self, delay: float) -> None:
        """Return after ``delay`` seconds."""


class LoopClock:
    """The event loop's own clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)


class _FakeTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that only moves when :meth:`advance` is awaited.

    Timers and sleepers fire in time order, and the event loop gets a few
    turns after each so the tasks they wake can act before time moves on.
    """

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self._heap: list[tuple[float, int, _FakeTimer]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = _FakeTimer(self.now + max(0.0, delay), callback)
        heapq.heappush(self._heap, (timer.when, next(self._order), timer))
        return timer

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        timer = self.call_later(delay, wake)
        try:
            await future
        finally:
            timer.cancel()

    def pending(self) -> list[float]:
        """Seconds from now until each live timer fires, soonest first."""
        return sorted(t.when - self.now for _, _, t in self._heap if not t.cancelled)

    async def settle(self, turns: int = 20) -> None:
        """Give the event loop some turns without moving time."""
        for _ in range(turns):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing every timer due on the way."""
        await self.settle()
        end = self.now + seconds
        while self._heap and self._heap[0][0] <= end:
            when, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            self.now = max(self.now, when)
            timer.callback()
            await self.settle()
        self.now = end
        await self.settle()
