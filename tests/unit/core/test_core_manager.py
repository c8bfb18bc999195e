"""The manager's decisions against a fake agent (the real one has its own tests)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dynod.config import Config
from dynod.logs.hub import LogHub
from dynod.logs.store import LogStore
from dynod.manager.manager import Manager
from dynod.manager.routes import RoutePublisher
from dynod.manager.states import DynoState, backoff_delay
from dynod.runtime.agent import AgentListener, DynoExit, DynoHandle, DynoStats
from dynod.runtime.spec import DynoSpec
from dynod.state.db import Store
from dynod.state.records import FormationEntry, ReleaseStatus


class FakeAgent:
    def __init__(self, listener: AgentListener) -> None:
        self.listener = listener
        self.running: dict[str, DynoSpec] = {}
        self.listening: set[str] = set()
        self.exits: dict[str, asyncio.Future[DynoExit]] = {}

    async def start(self, spec: DynoSpec) -> DynoHandle:
        self.running[spec.dyno_id] = spec
        self.exits[spec.dyno_id] = asyncio.get_running_loop().create_future()
        return DynoHandle(spec.dyno_id, spec.app, spec.name, 1, "10.0.0.2", 0.0)

    def exit(self, dyno_id: str, status: int) -> None:
        del self.running[dyno_id]
        event = DynoExit(dyno_id, status, False)
        self.exits[dyno_id].set_result(event)
        self.listener.on_exit(event)

    async def stop(self, dyno_id: str, timeout: float) -> bool:
        if dyno_id in self.running:
            self.exit(dyno_id, 143)
        return False

    async def kill(self, dyno_id: str) -> None:
        if dyno_id in self.running:
            self.exit(dyno_id, 137)

    async def wait(self, dyno_id: str) -> DynoExit:
        return await self.exits[dyno_id]

    async def list(self) -> list[DynoHandle]:
        return []

    async def is_listening(self, dyno_id: str, port: int) -> bool:
        return dyno_id in self.listening or self.running[dyno_id].name != "never"

    async def connections(self, dyno_id: str, port: int) -> int:
        return 0

    async def stats(self, dyno_id: str) -> DynoStats:
        return DynoStats(1, 2, 1, 0.0)

    async def close(self) -> None:
        pass

    async def destroy(self) -> None:
        pass


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Manager, FakeAgent, Store]]:
    config = Config(state_dir=tmp_path, run_dir=tmp_path)
    store = Store(tmp_path / "db")
    hub = LogHub(LogStore(tmp_path / "logs", 1 << 20))

    async def slug_dir(digest: str, uid: int, gid: int) -> Path:
        return tmp_path / digest

    manager = Manager(config, store, hub, RoutePublisher(tmp_path), tmp_path, slug_dir)
    agent = FakeAgent(manager)
    manager.agent = agent
    yield manager, agent, store
    await manager.close()
    hub.close()
    store.close()


def deploy(store: Store, name: str = "demo", web: int = 1, worker: int = 0) -> None:
    try:
        app = store.app(name)
    except Exception:
        app = store.create_app(name)
    release = store.create_release(
        app,
        description="Deploy",
        slug_digest="d1",
        config={"A": "1"},
        process_types={"web": "python3 app.py", "worker": "python3 w.py"},
        user="root",
        status=ReleaseStatus.SUCCEEDED,
    )
    store.set_formation(
        app,
        [
            FormationEntry("web", web, "standard-1x"),
            FormationEntry("worker", worker, "standard-1x"),
        ],
    )
    store.update_app(name, current_release=release.version)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.02)


async def test_reconcile_starts_formation_with_env(world) -> None:  # type: ignore[no-untyped-def]
    manager, agent, store = world
    deploy(store, web=2, worker=1)
    await manager.reconcile("demo")
    await settle()
    names = sorted(s.name for s in agent.running.values())
    assert names == ["web.1", "web.2", "worker.1"]
    web = next(s for s in agent.running.values() if s.name == "web.1")
    assert web.env["PORT"] == str(web.port)
    assert web.env["DYNO"] == "web.1" and web.env["A"] == "1"
    assert web.env["DYNOD_RELEASE_VERSION"] == "v1"
    assert web.env["MEMORY_AVAILABLE"] == "512"
    # The stack's PATH (the launch plan's default) unless a config var sets it.
    assert "PATH" not in web.env
    worker = next(s for s in agent.running.values() if s.name == "worker.1")
    assert "PORT" not in worker.env
    states = {d.name: d.state for d in manager.dynos.values()}
    assert states == {
        "web.1": DynoState.UP,
        "web.2": DynoState.UP,
        "worker.1": DynoState.UP,
    }
    table = (Path(manager.config.run_dir) / "routes.json").read_text()
    assert '"state": "running"' in table and "web.2" in table


async def test_crash_restarts_at_once_then_backs_off(world) -> None:  # type: ignore[no-untyped-def]
    manager, agent, store = world
    deploy(store)
    await manager.reconcile("demo")
    await settle()
    first = next(iter(agent.running))
    agent.exit(first, 0)
    await settle()
    assert len(agent.running) == 1 and first not in agent.running
    second = next(iter(agent.running))
    agent.exit(second, 1)
    await asyncio.sleep(0.1)
    # Second crash: one second of back-off, shown as crashed meanwhile.
    assert not agent.running
    assert [d.state for d in manager.dynos.values()] == [DynoState.CRASHED]
    await asyncio.sleep(1.1)
    assert len(agent.running) == 1
    assert backoff_delay(30) == 20 * 60

    # Each restart reads as Heroku's: the name leaves crashed, then starts.
    said = [
        line.split(": ", 1)[1]
        for line in manager.hub.recent(store.app("demo").id, 50)
        if "dynod[web.1]" in line
    ]
    restart = [
        "State changed from up to crashed",
        "State changed from crashed to starting",
        "Starting process with command `python3 app.py`",
    ]
    assert "\n".join(restart) in "\n".join(said)
    assert said.count("State changed from crashed to starting") == 2


async def test_scale_down_and_new_release_rolls(world) -> None:  # type: ignore[no-untyped-def]
    manager, agent, store = world
    deploy(store, web=2)
    await manager.reconcile("demo")
    await settle()
    old = set(agent.running)
    deploy(store, web=1)
    await manager.reconcile("demo")
    await settle()
    assert len(agent.running) == 1
    assert not (set(agent.running) & old)
    assert next(iter(agent.running.values())).release_version == 2


async def test_boot_timeout_is_r10_and_crash(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    manager, agent, store = world
    deploy(store)
    from dataclasses import replace

    from dynod.state.records import AppSettings

    store.update_app("demo", settings=replace(AppSettings(), boot_timeout=0.1))
    agent_is_listening = agent.is_listening

    async def never(dyno_id: str, port: int) -> bool:
        return False

    agent.is_listening = never  # type: ignore[method-assign]
    await manager.reconcile("demo")
    await asyncio.sleep(0.4)
    agent.is_listening = agent_is_listening  # type: ignore[method-assign]
    app = store.app("demo")
    lines = manager.hub.recent(app.id, 50)
    assert any("Error R10 (Boot timeout)" in x for x in lines)
    assert any("State changed from starting to crashed" in x for x in lines)


async def test_page_urls_reach_the_route_table_when_valid(world) -> None:  # type: ignore[no-untyped-def]
    manager, _agent, store = world
    deploy(store)
    store.update_app(
        "demo",
        config={
            "ERROR_PAGE_URL": "https://example.com/oops.html",
            "MAINTENANCE_PAGE_URL": "javascript:alert(1)",
        },
    )
    manager.publish_routes()
    table = json.loads((Path(manager.config.run_dir) / "routes.json").read_text())
    # The bad URL is left out rather than taking the app off the router.
    assert table["apps"]["demo"]["pages"] == {"error": "https://example.com/oops.html"}
