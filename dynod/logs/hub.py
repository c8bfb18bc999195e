"""The log hub: every event of every app goes through it.

Two ways in.  :meth:`LogHub.emit` takes one platform event (manager, router,
API) and formats it at once.  :meth:`LogHub.emit_output` is the hot path for
dyno output: it only appends the raw line to the dyno's *flow*; at the end of
the event-loop iteration every flow is formatted in one ``bytes.join`` with a
prefix (timestamp, ``app[web.1]:``) computed once for the batch, and each app's
batch goes to disk in one ``write``.  Order inside an app is kept: a flow is
sealed into the app's batch whenever another writer of that app comes in between.

A flow is rate-limited (a token bucket of ``rate_lines`` lines per second, one
second of burst): past it, its lines are counted and dropped until the bucket
refills, and the stream gets one line saying how many were dropped.

A tail that cannot keep up never slows the emitter: its queue is bounded,
overflowing events are counted, and the tail is told how many it missed (as
Logplex's L11 does) at the place of the gap.  Drains learn of new history
through :meth:`LogHub.watch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from dynod.logs.events import MAX_LINE_BYTES, LogEvent, format_stamp, matches
from dynod.logs.store import HistoryView, LogStore
from dynod.runtime.output import cut

TAIL_QUEUE = 10000
DEFAULT_RATE_LINES = 200_000
# How often a flow that keeps flooding is told again how much it lost.
_NOTICE_EVERY = 1.0
# A flow idle this long is forgotten (its bucket would be full again anyway).
_IDLE_FLOW = 30.0


class Tail:
    """One live reader of an app's stream, which never holds the hub back.

    Lines that pass the filters are queued, up to ``limit``; past it they are
    counted instead, and the reader gets one L11 line saying how many it missed
    where they went missing: before the first line queued after the gap, or as
    soon as it has read everything before it.  Nothing queued is ever thrown
    away, :meth:`close` included.
    """

    def __init__(
        self,
        source: str | None,
        dyno: str | None,
        ptype: str | None,
        limit: int = TAIL_QUEUE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source, self.dyno, self.ptype = source, dyno, ptype
        self.limit = limit
        # Unbounded as a queue: offer() keeps it to ``limit`` lines, and the
        # end marker and an L11 notice must always fit.
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.dropped = 0
        self.dropped_since = 0.0
        self.closed = False
        self._clock = clock

    def offer(self, line: str) -> None:
        if self.closed or not matches(line, self.source, self.dyno, self.ptype):
            return
        if self.queue.qsize() >= self.limit:
            if self.dropped == 0:
                self.dropped_since = self._clock()
            self.dropped += 1
            return
        if self.dropped:
            self.queue.put_nowait(self._notice())
        self.queue.put_nowait(line)

    async def lines(self, idle: float | None = None) -> AsyncIterator[str]:
        """Queued lines as they come, until :meth:`close`.

        With ``idle``, an empty string comes after each ``idle`` seconds without
        a line, so the reader can check on its own client meanwhile.
        """
        while True:
            if self.dropped and self.queue.empty():
                yield self._notice()
            if not self.queue.empty():
                line = self.queue.get_nowait()
            elif idle is None:
                line = await self.queue.get()
            else:
                try:
                    line = await asyncio.wait_for(self.queue.get(), idle)
                except TimeoutError:
                    yield ""
                    continue
            if line is None:
                if self.dropped:
                    yield self._notice()
                return
            yield line

    def close(self) -> None:
        """End :meth:`lines` once it has yielded what is queued."""
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)

    def _notice(self) -> str:
        since = format_stamp(self.dropped_since, micros=False)
        notice = LogEvent(
            self._clock(),
            "dynod",
            "logs",
            f"Error L11 (Tail buffer overflow) -> This tail session dropped "
            f"{self.dropped} messages since {since}",
        )
        self.dropped = 0
        return notice.format()


class _AppBatch:
    """What one app got during this loop iteration, in order."""

    __slots__ = ("app_id", "chunks", "open")

    def __init__(self, app_id: str) -> None:
        self.app_id = app_id
        self.chunks: list[bytes] = []
        self.open: _Flow | None = None


class _Flow:
    """One dyno's output: the lines of this iteration and its rate bucket."""

    __slots__ = (
        "app_id",
        "batch",
        "dropped",
        "dropped_since",
        "dropping",
        "dyno",
        "lines",
        "refilled",
        "tokens",
        "told",
    )

    def __init__(self, app_id: str, dyno: str, tokens: float, now: float) -> None:
        self.app_id = app_id
        self.dyno = dyno.encode()
        self.lines: list[bytes] = []
        self.batch: _AppBatch | None = None
        self.tokens = tokens
        self.refilled = now
        self.dropping = False
        self.dropped = 0
        self.dropped_since = 0.0
        self.told = 0.0


class LogHub:
    def __init__(
        self,
        store: LogStore,
        rate_lines: int = DEFAULT_RATE_LINES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.rate_lines = rate_lines
        self._clock = clock
        self._tails: dict[str, set[Tail]] = {}
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._flows: dict[str, _Flow] = {}
        self._batches: dict[str, _AppBatch] = {}
        self._busy: list[_Flow] = []
        self._stamp: bytes | None = None
        self._flush_scheduled = False
        self._swept = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._on_remove: list[Callable[[str], None]] = []

    # The ways in

    def emit(self, app_id: str, source: str, dyno: str, message: str) -> None:
        """One platform (or app) event, formatted now."""
        line = LogEvent(self._clock(), source, dyno, message).format()
        batch = self._batch(app_id)
        self._seal(batch)
        batch.chunks.append(line.encode() + b"\n")
        for tail in self._tails.get(app_id, ()):
            tail.offer(line)
        self._schedule_flush()

    def emit_output(self, key: str, app_id: str, dyno: str, line: bytes) -> None:
        """One line a dyno wrote (no newline).  ``key`` names the dyno uniquely.

        The caller guarantees ``len(line) <= MAX_LINE_BYTES`` (longer lines are
        split here, slowly).
        """
        flow = self._flows.get(key)
        if flow is None:
            flow = self._flows[key] = _Flow(
                app_id, dyno, float(self.rate_lines), self._clock()
            )
        if flow.dropping:
            flow.dropped += 1
            if not self._flush_scheduled:
                self._schedule_flush()
            return
        if not flow.lines:
            self._busy.append(flow)
            batch = self._batch(app_id)
            if batch.open is not flow:
                self._seal(batch)
                batch.open = flow
            flow.batch = batch
        elif flow.batch is not None and flow.batch.open is not flow:
            # Another writer of this app came in between: keep the order.
            self._seal(flow.batch)
            flow.batch.open = flow
        if len(line) > MAX_LINE_BYTES:
            flow.lines.extend(cut(line, MAX_LINE_BYTES))
        else:
            flow.lines.append(line)
        if not self._flush_scheduled:
            self._schedule_flush()

    def forget(self, key: str) -> None:
        """A dyno is gone: report what its flow dropped and free it."""
        flow = self._flows.get(key)
        if flow is None:
            return
        if flow.lines and flow.batch is not None:
            self._seal(flow.batch)
        if flow.dropped:
            self._notice(flow)
        del self._flows[key]

    # Batching

    def _batch(self, app_id: str) -> _AppBatch:
        batch = self._batches.get(app_id)
        if batch is None:
            batch = self._batches[app_id] = _AppBatch(app_id)
        return batch

    def _seal(self, batch: _AppBatch) -> None:
        """Format the app's open flow into its batch, with the iteration's prefix."""
        flow, batch.open = batch.open, None
        if flow is None or not flow.lines:
            return
        if self._stamp is None:
            self._stamp = format_stamp(self._clock()).encode()
        prefix = self._stamp + b" app[" + flow.dyno + b"]: "
        lines, flow.lines = flow.lines, []
        flow.tokens -= len(lines)
        batch.chunks.append(prefix + (b"\n" + prefix).join(lines) + b"\n")
        tails = self._tails.get(batch.app_id)
        if tails:
            text = prefix.decode()
            for raw in lines:
                line = text + raw.decode("utf-8", "replace")
                for tail in tails:
                    tail.offer(line)

    def _schedule_flush(self) -> None:
        # Batch the writes of one loop iteration into one write per app.
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._flush_scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every pending batch to its app's history; settle rate buckets."""
        self._flush_scheduled = False
        for batch in self._batches.values():
            self._seal(batch)
        busy, self._busy = self._busy, []
        for flow in busy:
            flow.batch = None
        # Rate notices are emitted here, into the batches written just below.
        self._settle(busy)
        batches, self._batches = self._batches, {}
        self._stamp = None
        for app_id, batch in batches.items():
            if batch.chunks:
                self.store.get(app_id).write(b"".join(batch.chunks))
                for event in self._watchers.get(app_id, ()):
                    event.set()

    def _settle(self, busy: list[_Flow]) -> None:
        """Refill buckets; start or end dropping; say what was dropped."""
        now = self._clock()
        rate = float(self.rate_lines)
        flows = set(busy) | {f for f in self._flows.values() if f.dropping}
        for flow in flows:
            flow.tokens = min(rate, flow.tokens + (now - flow.refilled) * rate)
            flow.refilled = now
            if not flow.dropping and flow.tokens < 0:
                flow.dropping, flow.dropped_since, flow.told = True, now, now
            elif flow.dropping and flow.tokens > 0:
                flow.dropping = False
                self._notice(flow)
            elif flow.dropping and now - flow.told >= _NOTICE_EVERY and flow.dropped:
                flow.told = now
                self._notice(flow)
        if any(f.dropping for f in flows) and self._timer is None:
            # A flood that stops must still end and be reported.
            with contextlib.suppress(RuntimeError):
                self._timer = asyncio.get_running_loop().call_later(
                    _NOTICE_EVERY, self._tick
                )
        if now - self._swept > _IDLE_FLOW:
            self._swept = now
            for key, flow in list(self._flows.items()):
                if not flow.dropping and now - flow.refilled > _IDLE_FLOW:
                    del self._flows[key]

    def _tick(self) -> None:
        self._timer = None
        self._schedule_flush()

    def _notice(self, flow: _Flow) -> None:
        since = format_stamp(flow.dropped_since, micros=False)
        self.emit(
            flow.app_id,
            "dynod",
            flow.dyno.decode(),
            f"Error L12 (Log rate limit): {flow.dropped} lines dropped since {since}; "
            f"a dyno may write {self.rate_lines} lines per second.",
        )
        flow.dropped = 0
        flow.dropped_since = self._clock()

    # Readers

    def recent(
        self,
        app_id: str,
        n: int,
        source: str | None = None,
        dyno: str | None = None,
        ptype: str | None = None,
    ) -> list[str]:
        return self.store.get(app_id).tail(n, source, dyno, ptype)

    def history(self, app_id: str) -> HistoryView:
        """The app's history up to now, pending lines included, for any thread.

        A tail subscribed right after this call (with no ``await`` between)
        gets exactly the lines the view does not hold.
        """
        self.flush()
        return self.store.get(app_id).snapshot()

    def subscribe(
        self,
        app_id: str,
        source: str | None = None,
        dyno: str | None = None,
        ptype: str | None = None,
    ) -> Tail:
        tail = Tail(source, dyno, ptype, clock=self._clock)
        self._tails.setdefault(app_id, set()).add(tail)
        return tail

    def unsubscribe(self, app_id: str, tail: Tail) -> None:
        self._tails.get(app_id, set()).discard(tail)

    def watch(self, app_id: str) -> asyncio.Event:
        """An event set whenever the app's history grows (clear it yourself)."""
        event = asyncio.Event()
        self._watchers.setdefault(app_id, set()).add(event)
        return event

    def unwatch(self, app_id: str, event: asyncio.Event) -> None:
        self._watchers.get(app_id, set()).discard(event)

    def on_remove(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(app_id)`` when an app and its history are removed."""
        self._on_remove.append(callback)

    def remove_app(self, app_id: str) -> None:
        for callback in self._on_remove:
            callback(app_id)
        for tail in self._tails.pop(app_id, set()):
            tail.close()
        self._watchers.pop(app_id, None)
        self._batches.pop(app_id, None)
        for key in [k for k, f in self._flows.items() if f.app_id == app_id]:
            del self._flows[key]
        self.store.remove(app_id)

    def end_tails(self) -> None:
        """End every live tail once it has sent what is queued for it."""
        self.flush()
        for tails in self._tails.values():
            for tail in tails:
                tail.close()
        self._tails.clear()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.end_tails()
        self.store.close()
