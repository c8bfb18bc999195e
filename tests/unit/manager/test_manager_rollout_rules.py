"""Rollout rules on a fake clock: worker surge, health checks, failed successors."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

from dynod.manager.health import Check
from dynod.manager.manager import DRAIN_TIMEOUT
from dynod.manager.states import DynoState
from dynod.runtime.agent import DynoHandle
from dynod.runtime.spec import DynoSpec
from tests.unit.manager.fakes import World


def _set(world: World, **settings: object) -> None:
    app = world.store.app("demo")
    world.store.update_app("demo", settings=replace(app.settings, **settings))


def _table(world: World) -> dict[str, list[str]]:
    """Names of the demo app's served and preboot dynos in the published table."""
    table = json.loads(world.manager.routes.path.read_text())
    app = table["apps"]["demo"]
    return {key: [d["name"] for d in app[key]] for key in ("dynos", "preboot")}


def _release_of_running(world: World) -> list[int]:
    return sorted(
        d.release
        for d in world.manager.dynos.values()
        if d.dyno_id in world.agent.running
    )


async def test_worker_surge_replaces_workers_one_at_a_time(world: World) -> None:
    world.deploy(web=0, worker=3)
    await world.converge()
    _set(world, worker_surge=1, stop_timeout=30)
    # Old workers take their whole grace to stop, so each batch shows.
    world.agent.stubborn.update(world.agent.running)

    world.deploy(web=0, worker=3)
    await world.converge()
    assert _release_of_running(world) == [1, 1, 1, 2]
    for done in (2, 3):
        await world.clock.advance(30.5)
        assert len(world.agent.running) == 4
        assert _release_of_running(world).count(2) == done
    await world.clock.advance(30.5)
    assert _release_of_running(world) == [2, 2, 2]
    assert sum("Error R12" in line for line in world.lines()) == 3


async def test_worker_surge_zero_replaces_all_workers_at_once(world: World) -> None:
    world.deploy(web=0, worker=3)
    await world.converge()
    world.agent.stubborn.update(world.agent.running)
    world.deploy(web=0, worker=3)
    await world.converge()
    assert _release_of_running(world) == [1, 1, 1, 2, 2, 2]


async def test_restart_is_paced_by_worker_surge(world: World) -> None:
    world.deploy(web=0, worker=2)
    await world.converge()
    _set(world, worker_surge=1)
    world.agent.stubborn.update(world.agent.running)
    first = set(world.agent.running)
    await world.manager.restart(world.store.app("demo"), "worker")
    await world.clock.advance(0.1)
    assert len(world.agent.running) == 3
    await world.clock.advance(30.5)
    await world.clock.advance(30.5)
    assert len(world.agent.running) == 2
    assert not first & set(world.agent.running)


async def test_health_path_gates_a_web_dyno_through_the_router(world: World) -> None:
    world.deploy(web=1)
    _set(world, health_path="/health")
    answers: list[int | None] = [None, 503]
    asked: list[Check] = []

    async def check(c: Check) -> int | None:
        asked.append(c)
        return answers.pop(0) if answers else 200

    world.manager.check_status = check
    await world.manager.reconcile("demo")
    await world.clock.advance(0.1)
    # Listening, not yet healthy: reachable for checks only.
    assert world.dynos()["web.1"].state is DynoState.STARTING
    assert _table(world) == {"dynos": [], "preboot": ["web.1"]}
    await world.clock.advance(1.0)
    assert world.dynos()["web.1"].state is DynoState.UP
    assert _table(world) == {"dynos": ["web.1"], "preboot": []}
    assert len(asked) == 3
    assert asked[0] == Check(
        router_addr="127.0.0.1",
        router_port=80,
        host="demo.localhost",
        path="/health",
        token=world.manager.routes.check_token,
        dyno="web.1",
    )


async def _successor_fails_its_checks(world: World) -> tuple[str, list[bool]]:
    """v1's web.1 serves; v2's fails its health check until it boots out (R10).

    Returns v1's dyno id and a switch: ``healthy[0] = True`` makes checks pass.
    """
    world.deploy(web=1)
    await world.converge()
    old = world.agent.by_name("web.1")
    _set(world, health_path="/health", boot_timeout=10)
    healthy = [False]

    async def check(c: Check) -> int | None:
        return 200 if healthy[0] else 500

    world.manager.check_status = check
    world.deploy(web=1)
    await world.converge()
    await world.clock.advance(10.5)
    return old, healthy


async def test_failing_health_check_is_r10_and_the_old_dyno_keeps_serving(
    world: World,
) -> None:
    old, healthy = await _successor_fails_its_checks(world)
    assert any(
        "Error R10 (Boot timeout) -> Web process did not answer GET /health with a "
        "2xx or 3xx within 10 seconds of launch (last answer: 500)" in line
        for line in world.lines()
    )
    # The successor crashed; the old dyno still serves, through its back-off.
    assert old in world.agent.running
    assert _table(world)["dynos"] == ["web.1"]
    await world.clock.advance(25.0)
    assert old in world.agent.running

    healthy[0] = True
    await world.clock.advance(30.0)
    assert old not in world.agent.running
    (new,) = [d for d in world.manager.dynos.values() if d.name == "web.1"]
    assert new.state is DynoState.UP and new.release == 2


async def test_old_web_dyno_stops_when_its_successor_is_scaled_away(
    world: World,
) -> None:
    world.deploy(web=2)
    await world.converge()
    old = world.agent.by_name("web.2")
    original = world.agent.start

    async def deaf_start(spec: DynoSpec) -> DynoHandle:
        world.agent.deaf.add(spec.dyno_id)
        return await original(spec)

    world.agent.start = deaf_start  # type: ignore[method-assign]
    world.deploy(web=2)
    await world.converge()
    assert old in world.agent.running
    world.deploy(web=1)
    await world.converge()
    await world.clock.advance(1.0)
    assert old not in world.agent.running


async def test_old_web_dyno_serves_on_while_a_crashed_successor_is_replaced(
    world: World,
) -> None:
    old, healthy = await _successor_fails_its_checks(world)
    assert old in world.agent.running

    # The next release forgets the crashed successor before it has started
    # the next one (its slug takes a while to unpack): the old dyno must not
    # take that moment for "no successor is coming".
    unpack = world.manager._slug_dir

    async def slow_unpack(digest: str, uid: int, gid: int) -> Path:
        await world.clock.sleep(1.5)
        return await unpack(digest, uid, gid)

    world.manager._slug_dir = slow_unpack
    healthy[0] = True
    world.deploy(web=1)
    rolling = asyncio.ensure_future(world.manager.reconcile("demo"))

    def new_up() -> bool:
        return any(
            d.release == 3 and d.state is DynoState.UP
            for d in world.manager.dynos.values()
        )

    deadline = world.clock.time() + 10
    while not new_up():
        assert world.clock.time() < deadline, "the new release never came up"
        assert old in world.agent.running
        assert "web.1" in _table(world)["dynos"]
        await world.clock.advance(0.1)
    await rolling
    await world.clock.advance(2.0)
    assert old not in world.agent.running
    assert [d.release for d in world.manager.dynos.values()] == [3]


async def test_old_web_dyno_gets_sigterm_once_its_requests_are_done(
    world: World,
) -> None:
    world.deploy(web=1)
    await world.converge()
    old = world.agent.by_name("web.1")
    world.agent.in_flight[old] = 2
    world.deploy(web=1)
    await world.converge()
    # Out of the table, but two requests still travel on it.
    await world.clock.advance(5.0)
    assert _table(world)["dynos"] == ["web.1"]
    assert old in world.agent.running and old not in world.agent.terminated
    world.agent.in_flight[old] = 0
    await world.clock.advance(0.2)
    assert old in world.agent.terminated


async def test_a_request_that_never_ends_is_cut_after_the_drain_timeout(
    world: World,
) -> None:
    world.deploy(web=1)
    await world.converge()
    old = world.agent.by_name("web.1")
    world.agent.in_flight[old] = 1
    world.deploy(web=1)
    await world.converge()
    await world.clock.advance(DRAIN_TIMEOUT - 1)
    assert old not in world.agent.terminated
    await world.clock.advance(1.5)
    assert old in world.agent.terminated


async def test_a_type_gone_from_the_procfile_is_stopped(world: World) -> None:
    world.deploy(web=1, worker=2)
    await world.converge()
    workers = {
        i for i, s in world.agent.running.items() if s.name.startswith("worker.")
    }
    assert len(workers) == 2

    # The next release's Procfile has web only; its formation still says 2.
    world.deploy(web=1, worker=2, types={"web": "python3 app.py"})
    await world.converge()
    await world.clock.advance(1.0)
    assert workers <= world.agent.terminated
    assert [s.name for s in world.agent.running.values()] == ["web.1"]
