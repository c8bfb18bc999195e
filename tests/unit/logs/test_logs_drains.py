"""Drain tasks against fake transports: framing, retries, overflow, L10/L14."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from dynod.errors import DrainFailed, UserInputError
from dynod.logs import drains as drains_module
from dynod.logs.drains import DrainTask
from dynod.logs.hub import LogHub
from dynod.logs.store import LogStore, Position
from dynod.logs.syslog import frame
from dynod.logs.transports import Batch, parse_url
from dynod.state.db import Store
from dynod.state.drains import DrainRows


def test_logs_syslog_frames_are_rfc5424_octet_counted() -> None:
    data = (
        b"2026-12-03T18:12:23.123456+00:00 app[web.1]: hello w\xc3\xb6rld\n"
        b"2026-12-03T18:12:23.200000+00:00 dynod[router]: at=info path=/\n"
        b"2026-12-03T18:12:24.000000+00:00 dynod[api]: Release v3 created by root\n"
        b"garbage\n"
    )
    payload, count = frame(data, b"d.tok")
    assert count == 3
    messages = []
    rest = payload
    while rest:
        length, _, rest = rest.partition(b" ")
        messages.append(rest[: int(length)])
        rest = rest[int(length) :]
    assert messages == [
        b"<190>1 2026-12-03T18:12:23.123456+00:00 d.tok app web.1 - - "
        b"hello w\xc3\xb6rld",
        b"<158>1 2026-12-03T18:12:23.200000+00:00 d.tok dynod router - - "
        b"at=info path=/",
        b"<45>1 2026-12-03T18:12:24.000000+00:00 d.tok dynod api - - "
        b"Release v3 created by root",
    ]
    https, _ = frame(data, b"d.tok", structured_data=False)
    assert b"d.tok app web.1 - hello" in https


def test_logs_drain_urls_are_checked() -> None:
    assert parse_url("syslog://127.0.0.1:514").port == 514
    assert parse_url("https://u:p@127.0.0.1/x").username == "u"
    for bad in ("ftp://h:1", "syslog://h", "syslog://:5", "https://"):
        with pytest.raises(UserInputError):
            parse_url(bad)


class FakeTransport:
    def __init__(self, failures: list[DrainFailed] | None = None) -> None:
        self.failures = failures or []
        self.sent: list[Batch] = []
        self.attempts: list[str] = []
        self.batch_bytes = 100 * 1024
        self.gate = asyncio.Event()
        self.gate.set()

    async def send(self, batch: Batch) -> None:
        await self.gate.wait()
        self.attempts.append(batch.frame_id)
        if self.failures:
            raise self.failures.pop(0)
        if batch.payload is None:
            batch.payload, batch.count = frame(batch.data, b"d.t")
        self.sent.append(batch)

    async def close(self) -> None:
        pass


def _setup(tmp_path: Path) -> tuple[LogHub, DrainRows, str]:
    store = Store(tmp_path / "db")
    app = store.create_app("demo")
    hub = LogHub(LogStore(tmp_path / "logs", 1 << 24))
    return hub, DrainRows(store), app.id


async def _until(check: object, timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.01)


def test_logs_drain_delivers_and_persists_its_cursor(tmp_path: Path) -> None:
    hub, rows, app_id = _setup(tmp_path)

    async def main() -> None:
        drain = rows.add(app_id, "syslog://127.0.0.1:1", hub.store.get(app_id).end())
        fake = FakeTransport()
        task = DrainTask(drain, hub, rows, fake)
        running = asyncio.create_task(task.run())
        for i in range(2000):
            hub.emit_output("d1", app_id, "web.1", b"line %d" % i)
        await _until(lambda: task.delivered == 2000)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        assert rows.find(app_id, drain.id).cursor == hub.store.get(app_id).end()

    asyncio.run(main())


def test_logs_drain_retry_keeps_frame_id_and_4xx_drops(tmp_path: Path) -> None:
    hub, rows, app_id = _setup(tmp_path)

    async def main() -> None:
        drain = rows.add(app_id, "https://127.0.0.1/x", Position(0, 0))
        fake = FakeTransport(
            [
                DrainFailed("503"),
                DrainFailed("timeout"),
                DrainFailed("400", retry=False),
            ]
        )
        fake.gate.clear()
        task = DrainTask(drain, hub, rows, fake)
        running = asyncio.create_task(task.run())
        hub.emit(app_id, "app", "web.1", "first")
        await asyncio.sleep(0.01)
        fake.gate.set()
        await _until(lambda: len(fake.attempts) == 3)
        # The two retries carried the first attempt's frame id; the 4xx dropped it.
        assert fake.attempts[0] == fake.attempts[1] == fake.attempts[2]
        hub.emit(app_id, "app", "web.1", "second")
        await _until(lambda: len(fake.sent) == 1)
        assert fake.sent[0].data.endswith(b"app[web.1]: second\n")
        assert fake.sent[0].frame_id != fake.attempts[0]
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

    asyncio.run(main())


def test_logs_drain_overflow_drops_oldest_and_writes_l10(tmp_path: Path) -> None:
    hub, rows, app_id = _setup(tmp_path)

    async def main() -> None:
        drain = rows.add(app_id, "syslog://127.0.0.1:1", hub.store.get(app_id).end())
        fake = FakeTransport()
        fake.gate.clear()
        task = DrainTask(drain, hub, rows, fake, buffer_bytes=20_000)
        running = asyncio.create_task(task.run())
        await asyncio.sleep(0.01)
        # The receiver is stuck while 5000 lines arrive.
        for i in range(5000):
            hub.emit_output("d1", app_id, "web.1", b"n=%d" % i)
        await asyncio.sleep(0.01)
        fake.gate.set()
        await _until(lambda: any(b"Error L10" in b.data for b in fake.sent))
        delivered = b"".join(b.data for b in fake.sent)
        seen = [int(n) for n in re.findall(rb"app\[web.1\]: n=(\d+)", delivered)]
        notice = re.search(
            rb"Error L10 \(output buffer overflow\): (\d+) messages", delivered
        )
        assert notice is not None
        # Oldest dropped: what arrived is the newest lines, in order, no gaps.
        assert seen == sorted(seen) and seen[-1] == 4999
        assert seen == list(range(seen[0], 5000))
        assert int(notice.group(1)) == task.dropped
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

    asyncio.run(main())


def test_logs_drain_certificate_failure_writes_l14_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(drains_module, "BACKOFF_FIRST", 0.01)
    hub, rows, app_id = _setup(tmp_path)

    async def main() -> None:
        drain = rows.add(app_id, "syslog+tls://127.0.0.1:6514", Position(0, 0))
        bad = [DrainFailed("x", certificate="bad certificate") for _ in range(3)]
        fake = FakeTransport(bad)
        task = DrainTask(drain, hub, rows, fake)
        running = asyncio.create_task(task.run())
        hub.emit(app_id, "app", "web.1", "hello")
        await _until(lambda: len(fake.sent) >= 1)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

    asyncio.run(main())
    l14 = [line for line in hub.recent(app_id, 100) if "L14" in line]
    assert l14 == [
        l14[0].split(" ", 1)[0] + " dynod[logs]: Error L14 (certificate validation): "
        'error="bad certificate" uri="syslog+tls://127.0.0.1:6514"'
    ]


def _numbers(batches: list[Batch]) -> list[int]:
    delivered = b"".join(b.data for b in batches)
    return [int(n) for n in re.findall(rb"app\[web.1\]: n=(\d+)", delivered)]


def test_logs_drain_receiver_holding_a_batch_still_bounds_and_tells(
    tmp_path: Path,
) -> None:
    hub, rows, app_id = _setup(tmp_path)

    async def main() -> None:
        drain = rows.add(app_id, "syslog://127.0.0.1:1", hub.store.get(app_id).end())
        fake = FakeTransport()
        fake.gate.clear()
        task = DrainTask(drain, hub, rows, fake, buffer_bytes=20_000)
        running = asyncio.create_task(task.run())
        # The first lines become a batch the receiver sits on; more pile up.
        hub.emit_output("d1", app_id, "web.1", b"n=0")
        await asyncio.sleep(0.05)
        for i in range(1, 5000):
            hub.emit_output("d1", app_id, "web.1", b"n=%d" % i)
        # L10 is written while the batch is still held, not once it is let go.
        await _until(lambda: any("Error L10" in x for x in hub.recent(app_id, 10)))
        assert fake.sent == [] and task.dropped > 0
        fake.gate.set()
        await _until(lambda: any(b"Error L10" in b.data for b in fake.sent))
        seen = _numbers(fake.sent)
        # The held batch, then the newest lines without a gap; the rest counted.
        assert seen[0] == 0 and seen[-1] == 4999
        assert seen[1:] == list(range(seen[1], 5000))
        assert len(seen) + task.dropped == 5000
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

    asyncio.run(main())


def test_logs_drain_held_batch_that_then_fails_is_dropped_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(drains_module, "BACKOFF_FIRST", 0.01)
    hub, rows, app_id = _setup(tmp_path)

    async def main() -> None:
        drain = rows.add(app_id, "syslog://127.0.0.1:1", hub.store.get(app_id).end())
        fake = FakeTransport([DrainFailed("reset")])
        fake.gate.clear()
        task = DrainTask(drain, hub, rows, fake, buffer_bytes=20_000)
        running = asyncio.create_task(task.run())
        hub.emit_output("d1", app_id, "web.1", b"n=0")
        await asyncio.sleep(0.05)
        for i in range(1, 5000):
            hub.emit_output("d1", app_id, "web.1", b"n=%d" % i)
        await _until(lambda: task.dropped > 0)
        fake.gate.set()
        await _until(lambda: 4999 in _numbers(fake.sent))
        seen = _numbers(fake.sent)
        # The failed batch was older than what overflow dropped: it went too,
        # counted, and nothing came twice.
        assert 0 not in seen and seen == list(range(seen[0], 5000))
        assert len(seen) + task.dropped == 5000
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

    asyncio.run(main())
