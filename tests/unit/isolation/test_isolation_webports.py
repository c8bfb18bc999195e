"""The router's table drives the firewall's list of web ports, before the router."""

from __future__ import annotations

import json
import os
from ipaddress import IPv4Address
from pathlib import Path

from dynod.firewall.rules import WebPort
from dynod.firewall.webports import FirewalledRoutes, ports_of, read_routes
from dynod.manager.routes import AppRoute, Backend

TABLE = {
    "a": AppRoute(("a.localhost",), "running", (Backend("web.1", "10.9.0.2", 4000),)),
    "b": AppRoute(("b.localhost",), "no-web"),
}


class FakeFirewall:
    def __init__(self, routes: Path) -> None:
        self.routes = routes
        # What the router's table said at the moment the firewall was told.
        self.calls: list[tuple[frozenset[WebPort], bool]] = []
        self.web: frozenset[WebPort] = frozenset()

    def allow_web(self, web: frozenset[WebPort]) -> None:
        self.calls.append((web, self.routes.exists()))
        self.web = frozenset(web)


def test_ports_of_a_table() -> None:
    assert ports_of(TABLE) == {WebPort(IPv4Address("10.9.0.2"), 4000)}


def test_the_firewall_hears_of_a_dyno_before_the_router(tmp_path: Path) -> None:
    firewall = FakeFirewall(tmp_path / "routes.json")
    routes = FirewalledRoutes(tmp_path, firewall)  # type: ignore[arg-type]

    routes.publish(TABLE)

    assert firewall.calls == [(ports_of(TABLE), False)]
    assert read_routes(tmp_path / "routes.json") == ports_of(TABLE)


def test_no_table_or_a_broken_one_means_no_ports(tmp_path: Path) -> None:
    assert read_routes(tmp_path / "routes.json") == frozenset()
    (tmp_path / "routes.json").write_text(json.dumps({"apps": {"a": {}}}))
    assert read_routes(tmp_path / "routes.json") == frozenset()


async def test_a_leaving_dyno_stays_reachable_until_every_router_moved_on(
    tmp_path: Path,
) -> None:
    firewall = FakeFirewall(tmp_path / "routes.json")
    routes = FirewalledRoutes(tmp_path, firewall)  # type: ignore[arg-type]
    port = WebPort(IPv4Address("10.9.0.2"), 4000)
    acks = tmp_path / "router-acks"
    acks.mkdir()

    # A worker (this process stands in for it) serves the first table.
    routes.publish(TABLE)
    (acks / str(os.getpid())).write_text(str(routes.version))

    # The dyno leaves the table, but the worker has not reloaded yet.
    routes.publish({"a": AppRoute(("a.localhost",), "booting")})
    assert port in firewall.web
    assert not await routes.wait_acknowledged(routes.version, timeout=0.05)
    assert port in firewall.web

    # Once the worker serves the new table, the port closes.
    (acks / str(os.getpid())).write_text(str(routes.version))
    assert await routes.wait_acknowledged(routes.version, timeout=1)
    assert port not in firewall.web
