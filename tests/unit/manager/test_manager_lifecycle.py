"""The dyno lifecycle's timers on a fake clock, against a fake agent.

Back-off, boot timeout, stop grace, daily cycling, one-off time-to-live and
the memory check all run on :class:`FakeClock`, so hours pass in milliseconds
and every deadline is checked on both of its sides.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from dynod.api.views import dyno_view
from dynod.manager.manager import Manager
from dynod.manager.memory import CHECK_INTERVAL
from dynod.manager.routes import RoutePublisher
from dynod.manager.states import BACKOFF_CAP, CYCLE_BASE, CYCLE_JITTER, DynoState
from dynod.runtime.agent import DynoHandle
from dynod.runtime.spec import MB, DynoSpec
from dynod.state import features
from dynod.state.records import AppSettings
from tests.unit.manager.fakes import World


async def test_backoff_schedule_first_at_once_then_doubling_to_cap(
    world: World,
) -> None:
    world.deploy(web=0, worker=1)
    await world.converge()

    # First crash, exit 0 included: a new dyno at once.
    world.agent.exit(world.agent.by_name("worker.1"), 0)
    await world.clock.advance(0)
    assert "worker.1" in {s.name for s in world.agent.running.values()}
    assert any("State changed from up to crashed" in x for x in world.lines())

    # Then 1 s, 2 s, 4 s, ... each honoured to the tick, never past 20 min.
    expected = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0]
    expected += [BACKOFF_CAP, BACKOFF_CAP]
    for delay in expected:
        world.agent.exit(world.agent.by_name("worker.1"), 1)
        await world.clock.advance(0)
        dyno = world.dynos()["worker.1"]
        assert dyno.state is DynoState.CRASHED
        assert dyno.restart_at == pytest.approx(world.clock.now + delay)
        await world.clock.advance(delay - 0.01)
        assert not world.agent.running, f"restarted before {delay} s"
        await world.clock.advance(0.02)
        assert len(world.agent.running) == 1, f"not restarted after {delay} s"


async def test_crash_loop_starts_few_dynos(world: World) -> None:
    world.deploy(web=0, worker=1)
    await world.converge()

    # An hour of a dyno that dies at once: a handful of starts, not thousands.
    deadline = world.clock.now + 3600
    while world.clock.now < deadline:
        if world.agent.running:
            world.agent.exit(next(iter(world.agent.running)), 1)
        await world.clock.advance(5.0)
    assert 10 <= len(world.agent.started) <= 20


async def test_ps_view_shows_crashed_with_next_attempt(world: World) -> None:
    world.deploy(web=0, worker=1)
    await world.converge()
    for _ in range(3):
        world.agent.exit(world.agent.by_name("worker.1"), 1)
        await world.clock.advance(5.0)
    world.agent.exit(world.agent.by_name("worker.1"), 1)
    await world.clock.advance(0)
    app = world.store.app("demo")
    view = dyno_view(app, world.dynos()["worker.1"], None)
    assert view["state"] == "crashed"
    assert view["restart_at"] is not None


async def test_restart_and_new_release_reset_backoff(world: World) -> None:
    world.deploy(web=0, worker=1)
    await world.converge()
    for _ in range(4):
        world.agent.exit(world.agent.by_name("worker.1"), 1)
        await world.clock.advance(10.0)
    world.agent.exit(world.agent.by_name("worker.1"), 1)
    await world.clock.advance(0)
    assert not world.agent.running

    # A manual restart starts it now, and its next crash restarts at once.
    await world.manager.restart(world.store.app("demo"))
    await world.clock.advance(0)
    world.agent.exit(world.agent.by_name("worker.1"), 1)
    await world.clock.advance(0)
    assert len(world.agent.running) == 1

    # Same for a new release.
    world.agent.exit(world.agent.by_name("worker.1"), 1)
    await world.clock.advance(0)
    assert not world.agent.running
    world.deploy(web=0, worker=1)
    await world.converge()
    assert len(world.agent.running) == 1


async def test_long_run_earns_a_fresh_backoff(world: World) -> None:
    world.deploy(web=0, worker=1)
    await world.converge()
    for _ in range(5):
        world.agent.exit(world.agent.by_name("worker.1"), 1)
        await world.clock.advance(20.0)
    await world.clock.advance(3600.0)
    world.agent.exit(world.agent.by_name("worker.1"), 1)
    await world.clock.advance(0)
    assert len(world.agent.running) == 1


async def test_one_offs_never_restart(world: World) -> None:
    world.deploy(web=0)
    await world.converge()
    app = world.store.app("demo")
    dyno = await world.manager.run(
        app, "exit 3", env={}, size="standard-1x", attach=False, tty=False
    )
    assert dyno.name.startswith("run.") and len(dyno.name) == 8
    world.agent.exit(dyno.dyno_id, 3)
    await world.clock.advance(3600.0)
    assert not world.agent.running
    assert any("State changed from up to down" in x for x in world.lines())


async def test_boot_timeout_on_both_sides(world: World) -> None:
    world.deploy(web=1)
    app = world.store.app("demo")
    world.store.update_app("demo", settings=replace(app.settings, boot_timeout=60))
    world.agent.deaf.add("any")

    # The agent only learns the id at start: make every web dyno deaf.
    original = world.agent.start

    async def deaf_start(spec: DynoSpec) -> DynoHandle:
        world.agent.deaf.add(spec.dyno_id)
        return await original(spec)

    world.agent.start = deaf_start  # type: ignore[method-assign]
    await world.manager.reconcile("demo")
    await world.clock.advance(59.9)
    assert world.dynos()["web.1"].state is DynoState.STARTING
    await world.clock.advance(0.2)
    lines = world.lines()
    assert any(
        "Error R10 (Boot timeout) -> Web process failed to bind to $PORT within "
        "60 seconds of launch" in x
        for x in lines
    )
    assert any("State changed from starting to crashed" in x for x in lines)


async def test_stop_grace_then_r12_and_sigkill(world: World) -> None:
    world.deploy(web=0, worker=1)
    app = world.store.app("demo")
    world.store.update_app("demo", settings=replace(app.settings, stop_timeout=30))
    await world.converge()
    dyno_id = world.agent.by_name("worker.1")
    world.agent.stubborn.add(dyno_id)

    world.deploy(web=0, worker=0)
    await world.converge()
    assert dyno_id in world.agent.terminated
    await world.clock.advance(29.8)
    assert dyno_id in world.agent.running
    await world.clock.advance(0.3)
    assert dyno_id not in world.agent.running
    lines = world.lines()
    assert any("Stopping all processes with SIGTERM" in x for x in lines)
    assert any(
        "Error R12 (Exit timeout) -> Process failed to exit within 30 seconds" in x
        for x in lines
    )
    assert any("Stopping process with SIGKILL" in x for x in lines)
    assert any("State changed from up to down" in x for x in lines)


async def test_daily_cycling_replaces_dynos_within_window(world: World) -> None:
    world.deploy(web=1, worker=1)
    await world.converge()
    first = set(world.agent.running)
    await world.clock.advance(CYCLE_BASE - 1)
    assert set(world.agent.running) == first
    await world.clock.advance(CYCLE_JITTER + 2)
    assert len(world.agent.running) == 2
    assert not set(world.agent.running) & first
    lines = world.lines()
    assert sum("Cycling" in x for x in lines) == 2
    # Web went start-new-first: the new web.1 was up before the old one stopped.
    web = [x for x in lines if "[web.1]" in x]
    up = max(i for i, x in enumerate(web) if "from starting to up" in x)
    term = max(i for i, x in enumerate(web) if "SIGTERM" in x)
    assert up < term


async def test_one_off_time_to_live(world: World) -> None:
    world.deploy(web=0)
    await world.converge()
    app = world.store.app("demo")
    dyno = await world.manager.run(
        app,
        "sleep infinity",
        env={},
        size="standard-1x",
        attach=False,
        tty=False,
        time_to_live=600,
    )
    await world.clock.advance(599)
    assert dyno.dyno_id in world.agent.running
    await world.clock.advance(2)
    assert dyno.dyno_id not in world.agent.running


async def test_memory_r14_then_r15_kill(world: World) -> None:
    world.deploy(web=0, worker=1)
    await world.converge()
    dyno_id = world.agent.by_name("worker.1")
    spec = world.agent.running[dyno_id]
    # The cgroup's hard limit is twice the size's quota.
    assert spec.memory_limit_bytes == 2 * 512 * MB

    world.agent.memory[dyno_id] = (600 * MB, 0)
    await world.clock.advance(CHECK_INTERVAL + 0.1)
    lines = world.lines()
    assert any("Process running mem=600MB(117.2%)" in x for x in lines)
    assert any("Error R14 (Memory quota exceeded)" in x for x in lines)
    assert dyno_id in world.agent.running

    # The kernel's OOM killer acted: R15, SIGKILL, crashed, restarted.
    world.agent.memory[dyno_id] = (1000 * MB, 1)
    await world.clock.advance(CHECK_INTERVAL)
    lines = world.lines()
    assert any("Error R15 (Memory quota vastly exceeded)" in x for x in lines)
    assert sum("Error R15" in x for x in lines) == 1
    assert dyno_id not in world.agent.running
    assert any("State changed from up to crashed" in x for x in lines)
    assert len(world.agent.running) == 1


async def test_memory_below_quota_logs_nothing(world: World) -> None:
    world.deploy(web=0, worker=1)
    await world.converge()
    world.agent.memory[world.agent.by_name("worker.1")] = (500 * MB, 0)
    await world.clock.advance(5 * CHECK_INTERVAL)
    assert not any("mem=" in x or "Error R1" in x for x in world.lines())


async def test_preboot_off_stops_old_web_without_waiting(world: World) -> None:
    world.deploy(web=1)
    await world.converge()
    old = world.agent.by_name("web.1")
    features.set_enabled(world.store, world.store.app("demo").id, "preboot", False)
    original = world.agent.start

    async def deaf_start(spec: DynoSpec) -> DynoHandle:
        world.agent.deaf.add(spec.dyno_id)
        return await original(spec)

    world.agent.start = deaf_start  # type: ignore[method-assign]
    world.deploy(web=1)
    await world.converge()
    # The new dyno is still booting, yet the old one is gone.
    assert old not in world.agent.running
    assert world.dynos()["web.1"].state is DynoState.STARTING


async def test_preboot_on_keeps_old_web_until_new_is_up(world: World) -> None:
    world.deploy(web=1)
    await world.converge()
    old = world.agent.by_name("web.1")
    original = world.agent.start
    news: list[str] = []

    async def deaf_start(spec: DynoSpec) -> DynoHandle:
        world.agent.deaf.add(spec.dyno_id)
        news.append(spec.dyno_id)
        return await original(spec)

    world.agent.start = deaf_start  # type: ignore[method-assign]
    world.deploy(web=1)
    await world.converge()
    await world.clock.advance(5.0)
    assert old in world.agent.running
    world.agent.deaf.discard(news[0])
    await world.clock.advance(1.0)
    assert old not in world.agent.running


async def test_adoption_resumes_watching(world: World) -> None:
    world.deploy(web=1, worker=1)
    await world.converge()
    records = {i: world.manager.records.load(i) for i in world.agent.running}
    assert all(records.values())

    # A new manager (a new daemon) over the same records and running dynos.
    old = world.manager
    await old.close()
    new = Manager(
        old.config,
        old.store,
        old.hub,
        RoutePublisher(old.config.run_dir),
        old.stack_dir,
        old._slug_dir,
        world.clock,
    )
    world.agent.listener = new
    world.agent.handles = [
        DynoHandle(i, "demo", s.name, 1, "10.0.0.2", 0.0)
        for i, s in world.agent.running.items()
    ]
    new.agent = world.agent
    world.manager = new
    # The backlog of a dyno's pipe arrives as the agent opens, before adopt();
    # it is kept for the dyno rather than dropped as unknown.
    web = world.agent.by_name("web.1")
    new.on_output(web, "stdout", b"written while no daemon ran")
    new.on_output("no-such-dyno", "stdout", b"never claimed")
    await new.adopt()
    assert sorted(d.name for d in new.dynos.values()) == ["web.1", "worker.1"]
    assert all(d.state is DynoState.UP for d in new.dynos.values())
    await world.clock.advance(0.1)
    assert [x for x in world.lines() if "app[web.1]" in x][-1].endswith(
        "app[web.1]: written while no daemon ran"
    )
    assert not any("never claimed" in x for x in world.lines())
    assert new._unclaimed is None

    # Still managed: a crash restarts, a scale-down stops.
    world.agent.exit(world.agent.by_name("worker.1"), 1)
    await world.clock.advance(0)
    assert "worker.1" in {s.name for s in world.agent.running.values()}
    world.deploy(web=0, worker=0)
    await world.converge()
    assert not world.agent.running


def test_settings_defaults_match_heroku() -> None:
    assert AppSettings().boot_timeout == 60
    assert AppSettings().stop_timeout == 30
