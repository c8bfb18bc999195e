"""Keeping ``<instance>-WEB`` in step with the router's table.

The router may open connections only to a web dyno's own ``$PORT``, so the
firewall must learn every routed dyno before the router does: the publisher
below rewrites the chain first and writes the table after, so the router never
sees a backend the firewall still drops.  When the daemon starts, the table the
routers still serve (``routes.json``) seeds the chain, so dynos adopted across
a restart stay reachable from the first instant.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from pathlib import Path

from dynod.firewall.iptables import Firewall
from dynod.firewall.rules import WebPort
from dynod.manager.routes import AppRoute, RoutePublisher


def ports_of(apps: dict[str, AppRoute]) -> frozenset[WebPort]:
    """Every (address, port) the table routes to."""
    return frozenset(
        WebPort(IPv4Address(b.addr), b.port)
        for route in apps.values()
        for b in route.backends
    )


def read_routes(path: Path) -> frozenset[WebPort]:
    """The web ports of a published table; empty when there is none (yet)."""
    try:
        table = json.loads(path.read_text())
        return frozenset(
            WebPort(IPv4Address(d["addr"]), int(d["port"]))
            for app in table["apps"].values()
            for d in [*app["dynos"], *app.get("preboot", [])]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return frozenset()


class FirewalledRoutes(RoutePublisher):
    """A :class:`RoutePublisher` that keeps ``<instance>-WEB`` in step.

    A dyno's port opens before the first table that routes to it.  It closes
    only once every router worker serves a table without it: a worker that has
    not yet reloaded may still open a connection to a dyno that is leaving,
    and that connection must reach it (it is still serving, draining) rather
    than be refused.  The firewall update runs on the caller's thread (a few
    milliseconds of ``iptables-restore``, only when the set of ports changes).
    """

    def __init__(self, run_dir: Path, firewall: Firewall) -> None:
        super().__init__(run_dir)
        self.firewall = firewall
        self._routed: frozenset[WebPort] = frozenset()
        # Ports routed no more, with the first table version without them.
        self._leaving: dict[WebPort, int] = {}

    def publish(self, apps: dict[str, AppRoute]) -> bool:
        wanted = ports_of(apps)
        for port in self.firewall.web - wanted:
            self._leaving.setdefault(port, self.version + 1)
        for port in wanted:
            self._leaving.pop(port, None)
        self._routed = wanted
        self._forget_served()
        self.firewall.allow_web(wanted | set(self._leaving))
        return super().publish(apps)

    async def wait_acknowledged(self, version: int, timeout: float = 2.0) -> bool:
        done = await super().wait_acknowledged(version, timeout)
        if self._forget_served():
            self.firewall.allow_web(self._routed | set(self._leaving))
        return done

    def _forget_served(self) -> bool:
        """Drop the leaving ports no router worker can still pick; any dropped?"""
        served = self.acknowledged()
        gone = [port for port, version in self._leaving.items() if version <= served]
        for port in gone:
            del self._leaving[port]
        return bool(gone)
