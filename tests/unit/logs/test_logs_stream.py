"""The log-stream handler on a real aiohttp server and a real history on disk."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from dynod.api import server
from dynod.api.server import Api, make_app
from dynod.config import Config
from dynod.logs.hub import LogHub
from dynod.logs.store import LogStore
from dynod.state.db import Store

STAMP = b"2026-12-03T18:12:23.123456+00:00"
# App lines that carry a router-like tag in their message: each one is a
# candidate a ``-d router`` read must look at closely, so scanning them is slow.
DECOY = STAMP + b" app[web.1]: echo dynod[router]: at=info " + b"x" * 40 + b"\n"


@asynccontextmanager
async def _serve(tmp_path: Path) -> AsyncIterator[tuple[LogHub, str, str]]:
    """The API's real routes over a unix socket, for one app."""
    store = Store(tmp_path / "db")
    app = store.create_app("demo")
    hub = LogHub(LogStore(tmp_path / "logs", 1 << 30))
    # The log stream uses only the store and the hub.
    none: Any = None
    api = Api(Config(), store, none, none, hub)
    runner = web.AppRunner(make_app(api))
    await runner.setup()
    sock = str(tmp_path / "api.sock")
    await web.UnixSite(runner, sock).start()
    try:
        yield hub, app.id, sock
    finally:
        # Ends the tails first, so no handler keeps the server from stopping.
        hub.close()
        await runner.cleanup()


def _fill(hub: LogHub, app_id: str, decoys: int, router_every: int) -> list[str]:
    """Decoy lines with a real router line every so often; the router lines."""
    log = hub.store.get(app_id)
    routers = []
    block = DECOY * router_every
    for i in range(decoys // router_every):
        line = STAMP + b" dynod[router]: at=info path=/%d" % i
        log.write(block + line + b"\n")
        routers.append(line.decode())
    return routers


def test_logs_filtered_read_runs_off_the_event_loop(tmp_path: Path) -> None:
    async def main() -> None:
        async with _serve(tmp_path) as (hub, app_id, sock):
            routers = _fill(hub, app_id, 600_000, 1000)
            started = time.perf_counter()
            assert hub.history(app_id).last(1500, None, "router", None) == routers
            on_loop = time.perf_counter() - started
            assert on_loop > 0.1, "the history is too small to show anything"

            # A ticker counts the loop's turns while the read is on.
            turns: list[float] = []
            done = asyncio.Event()

            async def tick() -> None:
                while not done.is_set():
                    await asyncio.sleep(0.002)
                    turns.append(time.perf_counter())

            ticker = asyncio.create_task(tick())
            connector = aiohttp.UnixConnector(path=sock)
            async with aiohttp.ClientSession(connector=connector) as session:
                started = time.perf_counter()
                async with session.get(
                    "http://dynod/apps/demo/log-stream",
                    params={"lines": "1500", "dyno": "router"},
                ) as response:
                    body = await response.text()
                ended = time.perf_counter()
            done.set()
            await ticker
            assert body.splitlines() == routers
            assert ended - started > on_loop / 2, (ended - started, on_loop)
            # Read on the loop, the loop would not turn at all until it is done;
            # read on a thread it turns, if slowed by sharing the GIL (dozens
            # of turns alone, a few when other threads of the process are busy).
            during = [t for t in turns if started < t < ended]
            assert len(during) >= 5, (len(during), ended - started)

    asyncio.run(main())


def test_logs_stream_joins_history_and_live_lines_exactly(tmp_path: Path) -> None:
    async def main() -> None:
        async with _serve(tmp_path) as (hub, app_id, sock):
            routers = _fill(hub, app_id, 300_000, 1000)
            stop = asyncio.Event()

            # Router lines keep coming while the history is read on a thread.
            async def emit() -> int:
                n = 0
                while not stop.is_set():
                    hub.emit(app_id, "dynod", "router", f"at=info path=/live/{n}")
                    n += 1
                    await asyncio.sleep(0)
                return n

            emitter = asyncio.create_task(emit())
            await asyncio.sleep(0.01)
            connector = aiohttp.UnixConnector(path=sock)
            got: list[str] = []
            async with (
                aiohttp.ClientSession(connector=connector) as session,
                session.get(
                    "http://dynod/apps/demo/log-stream",
                    params={"lines": "100000", "dyno": "router", "tail": "true"},
                ) as response,
            ):
                async for raw in response.content:
                    got.append(raw.decode().rstrip("\n"))
                    if len(got) > len(routers) + 2000:
                        break
            stop.set()
            await emitter
            assert got[: len(routers)] == routers
            live = [line.rsplit("/", 1)[1] for line in got[len(routers) :]]
            # Every live line once, in order, none lost between the two parts.
            assert live == [str(i) for i in range(len(live))]

    asyncio.run(main())


def test_logs_tail_of_a_client_that_left_ends_on_a_quiet_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "_TAIL_IDLE", 0.05)

    async def main() -> None:
        async with _serve(tmp_path) as (hub, app_id, sock):
            hub.emit(app_id, "dynod", "api", "one line of history")
            reader, writer = await asyncio.open_unix_connection(sock)
            writer.write(
                b"GET /apps/demo/log-stream?tail=true HTTP/1.0\r\nHost: d\r\n\r\n"
            )
            await reader.readuntil(b"one line of history\n")
            assert len(hub._tails[app_id]) == 1
            writer.close()
            await writer.wait_closed()
            # No line comes that a write could fail on; the tail ends anyway.
            async with asyncio.timeout(5):
                while hub._tails[app_id]:
                    await asyncio.sleep(0.01)

    asyncio.run(main())
