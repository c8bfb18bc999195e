"""dynod's watch over its router: one router per instance, even a slow one."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from dynod.config import Config
from dynod.daemon import router_supervisor
from dynod.daemon.router_supervisor import RouterSupervisor


async def test_a_router_still_starting_is_not_started_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(router_supervisor, "CHECK_INTERVAL", 0.05)
    supervisor = RouterSupervisor(Config(run_dir=tmp_path), lambda app, line: None)
    spawned: list[subprocess.Popen[bytes]] = []

    def spawn() -> None:
        # A router that takes its time: no pid file while it starts.
        supervisor._proc = subprocess.Popen(["sleep", "30"])
        spawned.append(supervisor._proc)

    monkeypatch.setattr(supervisor, "_spawn", spawn)
    try:
        await supervisor.start()
        await asyncio.sleep(0.5)
        assert len(spawned) == 1

        # Once it has died, a new one is started.
        spawned[0].kill()
        await asyncio.sleep(0.3)
        assert len(spawned) == 2
        assert spawned[0].returncode is not None
    finally:
        await supervisor.close()
        for proc in spawned:
            proc.kill()
            proc.wait()
