"""Drains: each ships an app's stream to one receiver, reading the history.

A drain is a task that reads the app's on-disk history forwards from its own
cursor, sends a batch, and moves the cursor once the batch is delivered
(persisted at most every :data:`SAVE_EVERY` seconds and on stop), so a dynod
restart loses nothing for drains: at worst a batch is sent twice.

The history is the buffer; what bounds it per drain is ``buffer_bytes``: when
more than that lies between the cursor and the end of the history, the oldest
lines are skipped (counted exactly) and the stream gets Logplex's L10 line.
The bound holds while a receiver sits on a batch, too: a receiver that accepts
the connection and never reads costs lines past that batch, not a stall.
A drain never holds anything but its own cursor, so a dead or slow receiver
slows no dyno and no other drain.  Failed batches are retried with doubling
back-off; a 4xx answer drops the batch; a refused certificate writes L14.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from dynod.errors import DrainFailed
from dynod.logs.events import format_stamp
from dynod.logs.hub import LogHub
from dynod.logs.store import AppLog, Position
from dynod.logs.transports import Batch, Transport, make_transport
from dynod.state.drains import Drain, DrainRows

log = structlog.get_logger("dynod.logs")

BUFFER_BYTES = 1024 * 1024
SAVE_EVERY = 0.5
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 30.0
# Drop notices are gathered for this long into one L10 line.
NOTICE_EVERY = 1.0
# How often the backlog is checked while a receiver holds a batch.
INFLIGHT_CHECK = 0.25


class DrainTask:
    """One drain's loop: read, send, advance; skip and report on overflow."""

    def __init__(
        self,
        drain: Drain,
        hub: LogHub,
        rows: DrainRows,
        transport: Transport,
        buffer_bytes: int = BUFFER_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.drain = drain
        self.hub = hub
        self.rows = rows
        self.transport = transport
        self.buffer_bytes = buffer_bytes
        self.clock = clock
        self.cursor = drain.cursor
        self.delivered = 0
        self.dropped = 0
        self._saved = drain.cursor
        self._saved_at = 0.0
        self._unreported = 0
        self._unreported_since = 0.0
        self._reported_at = 0.0
        self._cert_told = False
        self._resume: Position | None = None

    async def run(self) -> None:
        app_id = self.drain.app_id
        wake = self.hub.watch(app_id)
        pending: Batch | None = None
        backoff = BACKOFF_FIRST
        try:
            while True:
                history = self.hub.store.get(app_id)

                # Overflow: keep at most buffer_bytes ahead of the cursor.
                if history.backlog(self.cursor) > self.buffer_bytes:
                    self.cursor, skipped = history.skip_to(
                        self.cursor, self.buffer_bytes
                    )
                    pending = None
                    self._lost(skipped)
                self._report()

                # The next batch: the one that failed, or fresh lines.
                if pending is None:
                    wake.clear()
                    data, end = history.read(self.cursor, self.transport.batch_bytes)
                    if not data:
                        self._save(force=False)
                        await self._wait(wake)
                        continue
                    pending = Batch(data, self.cursor, end)

                # Send; on failure wait and go round (overflow may drop it).
                try:
                    await self._deliver(pending, history)
                except DrainFailed as exc:
                    if exc.certificate is not None:
                        self._certificate(exc.certificate)
                    if not exc.retry:
                        log.warning(
                            "drain batch refused", drain=self.drain.id, error=str(exc)
                        )
                        self.cursor, pending = self._past(pending), None
                        continue
                    log.info(
                        "drain delivery failed", drain=self.drain.id, error=str(exc)
                    )
                    if self._resume is not None:
                        # Newer lines were dropped while it was out: this
                        # older batch goes too, oldest first.
                        self._lost(pending.data.count(b"\n"))
                        self.cursor, pending = self._past(pending), None
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                backoff = BACKOFF_FIRST
                self._cert_told = False
                self.delivered += pending.count
                self.cursor, pending = self._past(pending), None
                self._save(force=False)
                # Let dynos and other drains run between batches.
                await asyncio.sleep(0)
        finally:
            self.hub.unwatch(app_id, wake)
            self._save(force=True)
            await self.transport.close()

    async def _deliver(self, batch: Batch, history: AppLog) -> None:
        """Send one batch; while the receiver holds it, drop what overflows past it.

        A receiver that accepts the connection but stops reading keeps a send
        pending for good; the history past the batch must stay bounded (and
        the loss be told) all the same.  Lines dropped meanwhile leave
        :attr:`_resume` where reading goes on after the batch.  Raises what
        the transport raised.
        """
        sending = asyncio.ensure_future(self.transport.send(batch))
        try:
            while True:
                await asyncio.wait({sending}, timeout=INFLIGHT_CHECK)
                if sending.done():
                    break
                ahead = self._resume or batch.end
                if history.backlog(ahead) > self.buffer_bytes:
                    self._resume, skipped = history.skip_to(ahead, self.buffer_bytes)
                    self._lost(skipped)
                self._report()
        finally:
            if not sending.done():
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sending
        sending.result()

    def _past(self, batch: Batch) -> Position:
        """Where reading goes on once ``batch`` is settled."""
        resume, self._resume = self._resume, None
        return resume or batch.end

    async def _wait(self, wake: asyncio.Event) -> None:
        # Wake on new history, or in a while to report drops and save the cursor.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), NOTICE_EVERY)

    def _lost(self, skipped: int) -> None:
        if not skipped:
            return
        if not self._unreported:
            self._unreported_since = time.time()
        self._unreported += skipped
        self.dropped += skipped

    def _report(self) -> None:
        """Write the L10 line for what overflow dropped, at most once a second."""
        now = self.clock()
        if not self._unreported or now - self._reported_at < NOTICE_EVERY:
            return
        self._reported_at = now
        since = format_stamp(self._unreported_since, micros=False)
        self.hub.emit(
            self.drain.app_id,
            "dynod",
            "logs",
            f"Error L10 (output buffer overflow): {self._unreported} messages "
            f"dropped since {since}.",
        )
        self._unreported = 0

    def _certificate(self, error: str) -> None:
        # Once per failing streak, not once per retry.
        if self._cert_told:
            return
        self._cert_told = True
        self.hub.emit(
            self.drain.app_id,
            "dynod",
            "logs",
            f'Error L14 (certificate validation): error="{error}" '
            f'uri="{self.drain.url}"',
        )

    def _save(self, force: bool) -> None:
        now = self.clock()
        if self.cursor == self._saved or (
            not force and now - self._saved_at < SAVE_EVERY
        ):
            return
        self.rows.save_cursor(self.drain.id, self.cursor)
        self._saved, self._saved_at = self.cursor, now


class DrainService:
    """Every drain of every app, as running tasks; adds and removes them."""

    def __init__(
        self,
        hub: LogHub,
        rows: DrainRows,
        ca_file: Path | None = None,
        buffer_bytes: int = BUFFER_BYTES,
    ) -> None:
        self.hub = hub
        self.rows = rows
        self.ca_file = ca_file
        self.buffer_bytes = buffer_bytes
        self.tasks: dict[str, DrainTask] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        hub.on_remove(self._app_removed)

    def start(self) -> None:
        """Start every drain in the state (after a restart, from its cursor)."""
        for drain in self.rows.all():
            self._spawn(drain)

    def add(self, app_id: str, url: str) -> Drain:
        """A new drain receiving what the app logs from now on."""
        make_transport(url, "d.check", self.ca_file)
        # Lines emitted before this call are not the drain's: start past them.
        self.hub.flush()
        drain = self.rows.add(app_id, url, self.hub.store.get(app_id).end())
        self._spawn(drain)
        return drain

    async def remove(self, app_id: str, ref: str) -> Drain:
        drain = self.rows.find(app_id, ref)
        await self._stop(drain.id)
        self.rows.remove(drain.id)
        return drain

    def _spawn(self, drain: Drain) -> None:
        transport = make_transport(drain.url, drain.token, self.ca_file)
        task = DrainTask(drain, self.hub, self.rows, transport, self.buffer_bytes)
        self.tasks[drain.id] = task
        self._running[drain.id] = asyncio.get_running_loop().create_task(task.run())

    async def _stop(self, drain_id: str) -> None:
        self.tasks.pop(drain_id, None)
        running = self._running.pop(drain_id, None)
        if running is not None:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running

    def _app_removed(self, app_id: str) -> None:
        # The rows went with the app (ON DELETE CASCADE); stop the tasks.
        for drain_id, task in list(self.tasks.items()):
            if task.drain.app_id == app_id:
                self.tasks.pop(drain_id, None)
                running = self._running.pop(drain_id, None)
                if running is not None:
                    running.cancel()

    async def close(self) -> None:
        for drain_id in list(self._running):
            await self._stop(drain_id)
