"""Custom domains, maintenance mode and metrics on a real daemon with a deployed app."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from tests.support.daemon import EXAMPLE_APP, Daemon

pytestmark = pytest.mark.integration

APP = "shop"


def _get(daemon: Daemon, host: str, path: str = "/") -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{daemon.http_port}{path}", headers={"Host": host}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _wait_status(daemon: Daemon, host: str, status: int, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    seen: tuple[int, str] = (0, "")
    while time.monotonic() < deadline:
        seen = _get(daemon, host)
        if seen[0] == status:
            return seen[1]
        time.sleep(0.05)
    pytest.fail(f"{host} answered {seen[0]} {seen[1]!r}, never {status}")


@pytest.fixture(scope="module")
def deployed(dynod: Daemon) -> Daemon:
    dynod.ctl("apps:create", APP)
    dynod.ctl("apps:create", "other")
    dynod.ctl("deploy", "-a", APP, str(EXAMPLE_APP))
    dynod.wait_for(APP, "/", "Hello from web.1")
    return dynod


def test_domains_add_routes_the_host_and_remove_stops_it(deployed: Daemon) -> None:
    added = deployed.ctl_json("domains:add", "WWW.Shop.Example", "-a", APP)
    assert added["hostname"] == "www.shop.example"
    assert added["kind"] == "custom"
    body = _wait_status(deployed, "www.shop.example", 200)
    assert "Hello from web.1 of shop" in body

    # Listed after the default domain, in the human form too.
    listed = deployed.ctl_json("domains", "-a", APP)
    assert [(d["hostname"], d["kind"]) for d in listed] == [
        ("shop.localhost", "heroku"),
        ("www.shop.example", "custom"),
    ]
    assert "www.shop.example" in deployed.ctl("domains", "-a", APP).stdout

    # One host, one app: the other app cannot take it, nor an app's default.
    taken = deployed.ctl("domains:add", "www.shop.example", "-a", "other", check=False)
    assert taken.returncode == 1
    assert "already in use by app shop" in taken.stderr
    default = deployed.ctl("domains:add", "shop.localhost", "-a", "other", check=False)
    assert default.returncode == 1
    assert "router's own domain" in default.stderr
    bad = deployed.ctl("domains:add", "no spaces.example", "-a", APP, check=False)
    assert bad.returncode == 1

    deployed.ctl("domains:remove", "www.shop.example", "-a", APP)
    body = _wait_status(deployed, "www.shop.example", 404)
    assert "No such app" in body
    # The default host kept working throughout.
    assert _get(deployed, "shop.localhost")[0] == 200


def test_domains_maintenance_serves_h80_and_keeps_dynos(deployed: Daemon) -> None:
    assert deployed.ctl("maintenance", "-a", APP).stdout.strip() == "off"
    deployed.ctl("maintenance:on", "-a", APP)
    try:
        assert deployed.ctl("maintenance", "-a", APP).stdout.strip() == "on"
        body = _wait_status(deployed, "shop.localhost", 503)
        assert "Offline for maintenance" in body
        # Dynos keep running while the page is served.
        dynos = deployed.ctl_json("ps", "-a", APP)
        assert [d["state"] for d in dynos if d["type"] == "web"] == ["up"]
        logs = deployed.ctl("logs", "-a", APP, "-n", "200").stdout
        assert "Maintenance mode on" in logs
        assert "code=H80" in logs
    finally:
        deployed.ctl("maintenance:off", "-a", APP)
    _wait_status(deployed, "shop.localhost", 200)


def test_domains_metrics_count_requests_by_status(deployed: Daemon) -> None:
    for _ in range(20):
        assert _get(deployed, "shop.localhost")[0] == 200
    deployed.ctl("maintenance:on", "-a", APP)
    _wait_status(deployed, "shop.localhost", 503)
    for _ in range(4):
        _get(deployed, "shop.localhost")
    deployed.ctl("maintenance:off", "-a", APP)

    # Router lines reach dynod as datagrams: give the last ones a moment.
    deadline = time.monotonic() + 5
    figures = deployed.ctl_json("metrics", "-a", APP)
    while figures["errors"].get("H80", 0) < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
        figures = deployed.ctl_json("metrics", "-a", APP)
    assert figures["statuses"]["2xx"] >= 20
    assert figures["errors"]["H80"] >= 5
    assert figures["requests"] >= 25
    service = figures["service_ms"]
    assert service["p50"] is not None
    assert service["p50"] <= service["p95"] <= service["p99"]
    human = deployed.ctl("metrics", "-a", APP).stdout
    assert "Service p99" in human
    assert json.dumps(figures)  # JSON-serialisable as the API sent it
