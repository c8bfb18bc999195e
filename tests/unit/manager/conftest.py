"""The ``world`` fixture: a manager on a fake clock against a fake agent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dynod.config import Config
from dynod.logs.hub import LogHub
from dynod.logs.store import LogStore
from dynod.manager.clock import FakeClock
from dynod.manager.manager import Manager
from dynod.manager.routes import RoutePublisher
from dynod.state.db import Store
from tests.unit.manager.fakes import FakeAgent, World


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    config = Config(state_dir=tmp_path, run_dir=tmp_path)
    store = Store(tmp_path / "db")
    hub = LogHub(LogStore(tmp_path / "logs", 1 << 20))
    clock = FakeClock()

    async def slug_dir(digest: str, uid: int, gid: int) -> Path:
        return tmp_path / digest

    manager = Manager(
        config, store, hub, RoutePublisher(tmp_path), tmp_path, slug_dir, clock
    )
    agent = FakeAgent(manager)
    manager.agent = agent
    # As after adoption in the daemon: the memory check runs from the start.
    manager.watch_memory()
    yield World(manager, agent, store, clock)
    await manager.close()
    hub.close()
    store.close()
