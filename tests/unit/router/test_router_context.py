"""The worker's shared state: dyno choice, quarantine, first-byte deadlines, pool."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from dynod.router.context import WorkerContext
from dynod.router.logline import LogSender
from dynod.router.settings import RouterSettings
from dynod.router.table import AppRoute, AppState, DynoRoute
from dynod.router.upstream import UpstreamConnection, UpstreamPool

A = DynoRoute("web.1", "10.0.0.1", 5000)
B = DynoRoute("web.2", "10.0.0.2", 5000)
APP = AppRoute("a", ("a.localhost",), AppState.RUNNING, (A, B))


def _in_loop(fn: Any) -> None:
    async def main() -> None:
        ctx = WorkerContext(RouterSettings(quarantine=5), LogSender("/nonexistent"), 80)
        fn(ctx)

    asyncio.run(main())


class FakeExchange:
    def __init__(self) -> None:
        self.overdue: list[float] = []

    def first_byte_overdue(self, sent_at: float) -> None:
        self.overdue.append(sent_at)


def test_pick_skips_tried_and_quarantined_dynos_and_says_when_one_returns() -> None:
    def check(ctx: WorkerContext) -> None:
        assert {ctx.pick(APP, frozenset()) for _ in range(50)} == {A, B}
        assert ctx.pick(APP, {A.key}) is B
        ctx.quarantine(B)
        assert ctx.pick(APP, {A.key}) is None
        assert {ctx.pick(APP, set()) for _ in range(20)} == {A}
        ends = ctx.quarantine_ends(APP, {A.key})
        assert ends is not None and 4 < ends - ctx.loop.time() <= 5
        assert ctx.quarantine_ends(APP, {A.key, B.key}) is None

    _in_loop(check)


def test_first_byte_deadlines_fire_in_order_and_forget_answered_exchanges() -> None:
    def check(ctx: WorkerContext) -> None:
        now = ctx.loop.time()
        old, answered, resent, fresh = (FakeExchange() for _ in range(4))
        ctx.watch_first_byte(cast(Any, old), now - 31)
        ctx.watch_first_byte(cast(Any, answered), now - 31)
        ctx.watch_first_byte(cast(Any, resent), now - 31)
        ctx.watch_first_byte(cast(Any, fresh), now - 1)
        # An answered exchange is dropped at once; a resent one starts over.
        ctx.unwatch_first_byte(cast(Any, answered))
        ctx.watch_first_byte(cast(Any, resent), now)
        ctx.expire_first_byte()
        assert (old.overdue, answered.overdue) == ([now - 31], [])
        assert (resent.overdue, fresh.overdue) == ([], [])
        # Nothing but the two still waiting is held.
        assert len(ctx._first_byte) == 2

    _in_loop(check)


class FakeConn:
    def __init__(self, key: tuple[str, int]) -> None:
        self.key = key
        self.closed = False
        self.exchange = None
        self.idle_since = 0.0
        self.used = False
        self.reading_paused = False
        self.holding: object | None = None

    def close(self) -> None:
        self.closed = True

    def resume_reading(self) -> None:
        pass


def test_pool_closes_connections_to_dynos_that_left_the_table() -> None:
    pool = UpstreamPool(size=4)
    a1, a2, b1 = FakeConn(A.key), FakeConn(A.key), FakeConn(B.key)
    pool.retain({A.key, B.key})
    for conn in (a1, b1):
        pool.put(cast(UpstreamConnection, conn), 1.0)

    # B leaves: its idle connection closes now, and a busy one closes when its
    # exchange ends instead of going back to the pool.
    pool.retain({A.key})
    assert b1.closed and not a1.closed
    busy_b = FakeConn(B.key)
    pool.put(cast(UpstreamConnection, busy_b), 2.0)
    assert busy_b.closed
    assert pool.take(B.key) is None
    pool.put(cast(UpstreamConnection, a2), 2.0)
    assert pool.idle_count(A.key) == 2
    assert pool.take(A.key) is cast(UpstreamConnection, a2)


def test_pool_closes_a_connection_whose_socket_is_still_full() -> None:
    pool = UpstreamPool(size=4)
    full = FakeConn(A.key)
    full.holding = object()
    pool.put(cast(UpstreamConnection, full), 1.0)
    assert full.closed
    assert pool.take(A.key) is None
