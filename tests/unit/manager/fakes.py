"""A manager on a fake clock, with a fake agent whose dynos are data.

Tests decide when dynos listen, exit or eat memory; hours of timers pass in
milliseconds.  The ``world`` fixture (in this folder's conftest) builds one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from dynod.manager.clock import FakeClock
from dynod.manager.dynos import Dyno
from dynod.manager.manager import Manager
from dynod.runtime.agent import AgentListener, DynoExit, DynoHandle, DynoStats
from dynod.runtime.spec import MB, DynoSpec
from dynod.state.db import Store
from dynod.state.records import FormationEntry, ReleaseStatus


class FakeAgent:
    """Dynos as data: tests decide when they listen, exit or eat memory."""

    def __init__(self, listener: AgentListener) -> None:
        self.listener = listener
        self.running: dict[str, DynoSpec] = {}
        self.started: list[DynoSpec] = []
        self.deaf: set[str] = set()  # never listen on $PORT
        self.stubborn: set[str] = set()  # ignore SIGTERM
        self.terminated: set[str] = set()
        self.memory: dict[str, tuple[int, int]] = {}  # usage, oom kills
        self.in_flight: dict[str, int] = {}  # connections to $PORT
        self.handles: list[DynoHandle] = []
        self._exits: dict[str, asyncio.Future[DynoExit]] = {}

    async def start(self, spec: DynoSpec) -> DynoHandle:
        self.running[spec.dyno_id] = spec
        self.started.append(spec)
        self._exits[spec.dyno_id] = asyncio.get_running_loop().create_future()
        return DynoHandle(spec.dyno_id, spec.app, spec.name, 1, "10.0.0.2", 0.0)

    def exit(self, dyno_id: str, status: int, oom: bool = False) -> None:
        del self.running[dyno_id]
        event = DynoExit(dyno_id, status, oom)
        self._exits[dyno_id].set_result(event)
        self.listener.on_exit(event)

    def by_name(self, name: str) -> str:
        (found,) = [i for i, s in self.running.items() if s.name == name]
        return found

    async def stop(self, dyno_id: str, timeout: float) -> bool:
        if dyno_id not in self.running:
            return False
        self.terminated.add(dyno_id)
        if dyno_id not in self.stubborn:
            self.exit(dyno_id, 143)
        await self._exits[dyno_id]
        return False

    async def kill(self, dyno_id: str) -> None:
        if dyno_id in self.running:
            self.exit(dyno_id, 137)

    async def wait(self, dyno_id: str) -> DynoExit:
        return await self._exits[dyno_id]

    async def list(self) -> list[DynoHandle]:
        return self.handles

    async def is_listening(self, dyno_id: str, port: int) -> bool:
        return dyno_id in self.running and dyno_id not in self.deaf

    async def connections(self, dyno_id: str, port: int) -> int:
        return self.in_flight.get(dyno_id, 0) if dyno_id in self.running else 0

    async def stats(self, dyno_id: str) -> DynoStats:
        usage, ooms = self.memory.get(dyno_id, (10 * MB, 0))
        return DynoStats(usage, 1024 * MB, 1, 0.0, ooms)

    async def close(self) -> None:
        pass

    async def destroy(self) -> None:
        pass


@dataclass
class World:
    manager: Manager
    agent: FakeAgent
    store: Store
    clock: FakeClock

    def lines(self) -> list[str]:
        app = self.store.app("demo")
        return self.manager.hub.recent(app.id, 1500)

    def dynos(self) -> dict[str, Dyno]:
        return {d.name: d for d in self.manager.dynos.values() if not d.replaced}

    def deploy(
        self, web: int = 1, worker: int = 0, types: dict[str, str] | None = None
    ) -> None:
        """A new release of the ``demo`` app (``types``: its Procfile) and
        the formation web=``web`` worker=``worker``."""
        try:
            app = self.store.app("demo")
        except Exception:
            app = self.store.create_app("demo")
        release = self.store.create_release(
            app,
            description="Deploy",
            slug_digest="d1",
            config={},
            process_types=types or {"web": "python3 app.py", "worker": "python3 w.py"},
            user="root",
            status=ReleaseStatus.SUCCEEDED,
        )
        self.store.set_formation(
            app,
            [
                FormationEntry("web", web, "standard-1x"),
                FormationEntry("worker", worker, "standard-1x"),
            ],
        )
        self.store.update_app("demo", current_release=release.version)

    async def converge(self) -> None:
        await self.manager.reconcile("demo")
        await self.clock.advance(0.1)
