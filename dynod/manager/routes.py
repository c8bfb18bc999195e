"""Route tables for the router, published as one file written atomically.

The router workers watch ``<run_dir>/routes.json`` and swap in each new version
whole, so a table is always complete and the router never waits for dynod: when
dynod is down the routers keep the last table they read.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dynod.router.watcher import ACKS_DIR


@dataclass(frozen=True)
class Backend:
    name: str
    addr: str
    port: int


@dataclass(frozen=True)
class AppRoute:
    hosts: tuple[str, ...]
    # running, not-deployed, no-web, crashed, booting or maintenance
    state: str
    dynos: tuple[Backend, ...] = field(default=())
    # Page kind ("error", "maintenance") -> URL the router sends clients on to.
    pages: tuple[tuple[str, str], ...] = ()
    # Listening web dynos that only health checks reach until they pass.
    preboot: tuple[Backend, ...] = ()

    @property
    def backends(self) -> tuple[Backend, ...]:
        """Every dyno the router may connect to for this app."""
        return self.dynos + self.preboot


class RoutePublisher:
    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "routes.json"
        # Versions go on from the table an earlier daemon left: routers still
        # serve it, and their acknowledgements must not look newer than ours.
        self.version = _version_of(self.path)
        self._last: dict[str, AppRoute] | None = None
        # Health checks carry it; a new one per daemon, so none outlives it.
        self.check_token = secrets.token_hex(16)

    def acknowledged(self) -> int:
        """The oldest table version that every live router worker serves.

        Workers write the version they serve to ``router-acks/<pid>``; files of
        workers that are gone are ignored.  Returns the current version when no
        worker is running (nothing can still be sending to an old dyno).
        """
        oldest = self.version
        try:
            entries = list(os.scandir(self.path.parent / ACKS_DIR))
        except FileNotFoundError:
            return oldest
        for entry in entries:
            if not entry.name.isdigit():
                continue
            if not os.path.exists(f"/proc/{entry.name}"):
                continue
            try:
                oldest = min(oldest, int(Path(entry.path).read_text()))
            except (OSError, ValueError):
                continue
        return oldest

    async def wait_acknowledged(self, version: int, timeout: float = 2.0) -> bool:
        """Wait until every router worker serves ``version`` or newer."""
        deadline = time.monotonic() + timeout
        while self.acknowledged() < version:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def publish(self, apps: dict[str, AppRoute]) -> bool:
        """Write the table if it changed; returns True when a new one was written."""
        if apps == self._last:
            return False
        self.version += 1
        table = {
            "version": self.version,
            "check_token": self.check_token,
            "apps": {
                name: {
                    "hosts": list(route.hosts),
                    "state": route.state,
                    "dynos": [asdict(b) for b in route.dynos],
                    "preboot": [asdict(b) for b in route.preboot],
                    "pages": dict(route.pages),
                }
                for name, route in apps.items()
            },
        }
        # Root's alone: the check token lets a request reach a booting dyno.
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(table))
        os.replace(tmp, self.path)
        self._last = dict(apps)
        return True


def _version_of(path: Path) -> int:
    """The version of the table at ``path``; 0 when there is none to read."""
    try:
        version = json.loads(path.read_text()).get("version", 0)
    except (OSError, ValueError, AttributeError):
        return 0
    return version if isinstance(version, int) else 0
