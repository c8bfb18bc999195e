"""The log hub: every event of every app goes through :meth:`LogHub.emit`.

An event is formatted once, appended to the app's on-disk history and offered to
the app's live tails.  A tail that cannot keep up never slows the emitter: its
queue is bounded, overflowing events are counted, and the tail is told how many
it missed (as Logplex's L11 does) once it catches up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from dynod.logs.events import LogEvent, matches
from dynod.logs.store import LogStore

TAIL_QUEUE = 10000


class Tail:
    def __init__(self, source: str | None, dyno: str | None, ptype: str | None) -> None:
        self.source, self.dyno, self.ptype = source, dyno, ptype
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(TAIL_QUEUE)
        self.dropped = 0
        self.dropped_since = 0.0

    def offer(self, line: str) -> None:
        if not matches(line, self.source, self.dyno, self.ptype):
            return
        try:
            self.queue.put_nowait(line)
        except asyncio.QueueFull:
            if self.dropped == 0:
                self.dropped_since = time.time()
            self.dropped += 1

    async def lines(self) -> AsyncIterator[str]:
        while True:
            line = await self.queue.get()
            if line is None:
                return
            if self.dropped:
                since = datetime.fromtimestamp(self.dropped_since, UTC)
                notice = LogEvent(
                    time.time(),
                    "dynod",
                    "logs",
                    f"Error L11 (Tail buffer overflow) -> This tail session dropped "
                    f"{self.dropped} messages since "
                    f"{since.strftime('%Y-%m-%dT%H:%M:%S+00:00')}",
                )
                self.dropped = 0
                yield notice.format()
            yield line

    def close(self) -> None:
        # Make room for the end marker even when the queue is full.
        while self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class LogHub:
    def __init__(self, store: LogStore) -> None:
        self.store = store
        self._tails: dict[str, set[Tail]] = {}
        self._flush_scheduled = False

    def emit(self, app_id: str, source: str, dyno: str, message: str) -> None:
        line = LogEvent(time.time(), source, dyno, message).format()
        self.store.get(app_id).append(line)
        for tail in self._tails.get(app_id, ()):
            tail.offer(line)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        # Batch the writes of one loop iteration into one flush per app.
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.store.flush()
            return
        self._flush_scheduled = True
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self.store.flush()

    def recent(
        self,
        app_id: str,
        n: int,
        source: str | None = None,
        dyno: str | None = None,
        ptype: str | None = None,
    ) -> list[str]:
        return self.store.get(app_id).tail(n, source, dyno, ptype)

    def subscribe(
        self,
        app_id: str,
        source: str | None = None,
        dyno: str | None = None,
        ptype: str | None = None,
    ) -> Tail:
        tail = Tail(source, dyno, ptype)
        self._tails.setdefault(app_id, set()).add(tail)
        return tail

    def unsubscribe(self, app_id: str, tail: Tail) -> None:
        self._tails.get(app_id, set()).discard(tail)

    def remove_app(self, app_id: str) -> None:
        for tail in self._tails.pop(app_id, set()):
            tail.close()
        self.store.remove(app_id)

    def close(self) -> None:
        for tails in self._tails.values():
            for tail in tails:
                tail.close()
        self._tails.clear()
        self.store.close()
