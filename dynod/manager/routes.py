"""Route tables for the router, published as one file written atomically.

The router workers watch ``<run_dir>/routes.json`` and swap in each new version
whole, so a table is always complete and the router never waits for dynod: when
dynod is down the routers keep the last table they read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path


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


class RoutePublisher:
    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "routes.json"
        self.version = 0
        self._last: dict[str, AppRoute] | None = None

    def publish(self, apps: dict[str, AppRoute]) -> bool:
        """Write the table if it changed; returns True when a new one was written."""
        if apps == self._last:
            return False
        self.version += 1
        table = {
            "version": self.version,
            "apps": {
                name: {
                    "hosts": list(route.hosts),
                    "state": route.state,
                    "dynos": [
                        {"name": b.name, "addr": b.addr, "port": b.port}
                        for b in route.dynos
                    ],
                }
                for name, route in apps.items()
            },
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(table))
        os.replace(tmp, self.path)
        self._last = dict(apps)
        return True
