"""Health-checked rollouts on a real daemon: a new web dyno serves only once it
answers the app's ``health_path`` through the router, and a release whose dynos
never do leaves the old ones serving, with not one request failed.

The example app answers ``/env/READY`` with 200 while the config var is set
and 404 once it is unset, so a config change makes a release unhealthy.
"""

from __future__ import annotations

import time

import pytest

from tests.support.daemon import EXAMPLE_APP, Daemon
from tests.support.load import LoadLoop

pytestmark = pytest.mark.integration

APP = "checked"
HOST = f"{APP}.localhost"


def _served_releases(bodies: dict[str, int]) -> set[str]:
    return {b.split("(release ")[1].split(")")[0] for b in bodies if "(release " in b}


def _logs(d: Daemon) -> list[str]:
    return d.ctl("logs", "-a", APP, "-n", "1500").stdout.splitlines()


def _wait_log(d: Daemon, text: str, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = _logs(d)
        if any(text in x for x in lines):
            return lines
        time.sleep(0.2)
    pytest.fail(f"no log line with {text!r}:\n" + "\n".join(_logs(d)[-40:]))


def test_unhealthy_release_never_takes_traffic(dynod: Daemon) -> None:
    dynod.ctl("apps:create", APP)
    try:
        dynod.ctl("config:set", "-a", APP, "READY=yes")
        dynod.ctl(
            "apps:settings:set", "-a", APP, "health_path=/env/READY", "boot_timeout=4"
        )
        dynod.ctl("deploy", "-a", APP, str(EXAMPLE_APP))
        dynod.wait_for(APP, "/", "Hello from web.1")
        # The check went through the router, with the app's own Host.
        checks = [x for x in _logs(dynod) if 'path="/env/READY"' in x]
        assert checks and f"host={HOST}" in checks[0] and "status=200" in checks[0]
        good = dynod.ctl_json("releases", "-a", APP)[0]["version"]

        with LoadLoop(dynod.http_port, HOST) as load:
            time.sleep(0.3)
            dynod.ctl("config:unset", "-a", APP, "READY")
            lines = _wait_log(dynod, "Error R10 (Boot timeout)")
            time.sleep(1.0)
        result = load.stop()
        assert result.requests > 100
        assert not result.failures, result.failures[:10]
        assert _served_releases(result.bodies) == {f"v{good}"}
        assert any(
            "Web process did not answer GET /env/READY with a 2xx or 3xx within 4 "
            "seconds of launch (last answer: 404)" in x
            for x in lines
        )
        # ps shows the old dyno serving beside the new release's, which
        # crashed and is being retried.
        dynos = dynod.ctl_json("ps", "-a", APP)
        assert [(d["name"], d["release"]["version"]) for d in dynos] == [
            ("web.1", good),
            ("web.1", good + 1),
        ]
        assert dynos[0]["state"] == "up" and dynos[1]["state"] != "up"

        # A healthy release takes over, still without a failed request.
        with LoadLoop(dynod.http_port, HOST) as load:
            time.sleep(0.3)
            dynod.ctl("config:set", "-a", APP, "READY=again")
            fixed = dynod.ctl_json("releases", "-a", APP)[0]["version"]
            deadline = time.monotonic() + 30
            while f"v{fixed}" not in _served_releases(load.bodies()):
                assert time.monotonic() < deadline, "the healthy release never served"
                time.sleep(0.1)
            time.sleep(1.5)
        result = load.stop()
        assert not result.failures, result.failures[:10]
        dynos = dynod.ctl_json("ps", "-a", APP)
        assert [(d["release"]["version"], d["state"]) for d in dynos] == [(fixed, "up")]
    finally:
        dynod.ctl("apps:destroy", APP, "--confirm", APP, check=False)
