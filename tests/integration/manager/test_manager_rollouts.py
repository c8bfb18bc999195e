"""Rollouts under steady load through the router: not one request may fail.

Each kind of rollout (deploy, config:set, rollback, ps:restart) runs while a
load loop keeps sending requests to the app; every non-2xx answer and every
socket error counts as a failure, and the test wants none.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.daemon import EXAMPLE_APP, Daemon
from tests.support.load import LoadLoop, LoadResult

pytestmark = pytest.mark.integration

APP = "roll"


@pytest.fixture(scope="module")
def deployed(dynod: Daemon) -> Daemon:
    dynod.ctl("apps:create", APP)
    dynod.ctl("deploy", "-a", APP, str(EXAMPLE_APP))
    dynod.ctl("ps:scale", "-a", APP, "web=2")
    dynod.wait_for(APP, "/", "Hello from web.")
    _wait_all_up(dynod)
    return dynod


def _wait_all_up(d: Daemon, timeout: float = 30) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dynos = d.ctl_json("ps", "-a", APP)
        if dynos and all(x["state"] == "up" for x in dynos):
            return list(dynos)
        time.sleep(0.1)
    pytest.fail(f"dynos never all up: {dynos}")


def _under_load(d: Daemon, action: Callable[[], None], expect: str) -> LoadResult:
    """Run ``action`` under load; keep the load on until ``expect`` is served."""
    with LoadLoop(d.http_port, f"{APP}.localhost") as load:
        time.sleep(0.5)
        action()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(expect in body for body in load.bodies()):
                break
            time.sleep(0.05)
        # Past the switch: the old dynos are draining and stopping now.
        time.sleep(2.0)
    result = load.stop()
    assert result.requests > 200, f"too little load: {result.requests} requests"
    return result


def _assert_clean(d: Daemon, result: LoadResult, kind: str) -> None:
    if not result.failures:
        return
    # Router errors and dyno events tell which step lost the requests.
    logs = d.ctl("logs", "-a", APP, "-s", "dynod", "-n", "1500").stdout.splitlines()
    told = [x for x in logs if " dynod[" in x and "at=info" not in x]
    pytest.fail(
        f"{len(result.failures)} of {result.requests} requests failed during "
        f"{kind}:\n" + "\n".join(result.failures[:20]) + "\n" + "\n".join(told[-80:])
    )


def test_deploy_loses_no_request(deployed: Daemon, tmp_path: Path) -> None:
    changed = tmp_path / "app"
    shutil.copytree(EXAMPLE_APP, changed)
    app_py = changed / "app.py"
    app_py.write_text(app_py.read_text().replace("Hello from", "Howdy from"))
    result = _under_load(
        deployed, lambda: deployed.ctl("deploy", "-a", APP, str(changed)), "Howdy"
    )
    _assert_clean(deployed, result, "deploy")
    assert all(d["release"] == {"version": 2} for d in _wait_all_up(deployed))


def test_config_set_loses_no_request(deployed: Daemon) -> None:
    version = deployed.ctl_json("releases", "-a", APP)[0]["version"] + 1
    result = _under_load(
        deployed,
        lambda: deployed.ctl("config:set", "-a", APP, "GREETING=hi"),
        f"(release v{version})",
    )
    _assert_clean(deployed, result, "config:set")


def test_rollback_loses_no_request(deployed: Daemon) -> None:
    version = deployed.ctl_json("releases", "-a", APP)[0]["version"] + 1
    result = _under_load(
        deployed,
        lambda: deployed.ctl("rollback", "-a", APP, "v1"),
        f"(release v{version})",
    )
    _assert_clean(deployed, result, "rollback")
    assert "Hello from" in deployed.get(APP, "/")[1]


def test_restart_loses_no_request(deployed: Daemon) -> None:
    before = {d["id"] for d in _wait_all_up(deployed)}

    def restart() -> None:
        deployed.ctl("ps:restart", "-a", APP)

    with LoadLoop(deployed.http_port, f"{APP}.localhost") as load:
        time.sleep(0.5)
        restart()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            dynos = deployed.ctl_json("ps", "-a", APP)
            ids = {d["id"] for d in dynos}
            if not ids & before and all(d["state"] == "up" for d in dynos):
                break
            time.sleep(0.1)
        time.sleep(2.0)
    result = load.stop()
    assert result.requests > 200
    _assert_clean(deployed, result, "ps:restart")
    assert not {d["id"] for d in _wait_all_up(deployed)} & before


def test_requests_in_flight_on_old_dynos_finish_before_sigterm(
    deployed: Daemon,
) -> None:
    # The example app ends at once on SIGTERM, so a slow request still on an
    # old dyno when it is stopped would fail.
    version = deployed.ctl_json("releases", "-a", APP)[0]["version"]
    answers: list[tuple[int, str]] = []

    def slow() -> None:
        answers.append(deployed.get(APP, "/sleep/3", timeout=30))

    threads = [threading.Thread(target=slow) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    started = time.monotonic()
    deployed.ctl("config:set", "-a", APP, "GREETING=patient")
    # The new release serves while the slow requests are still running.
    deployed.wait_for(APP, "/", f"(release v{version + 1})")
    assert time.monotonic() - started < 2.5
    for t in threads:
        t.join(30)
    assert [status for status, _ in answers] == [200] * 4, answers
    assert all(
        a.startswith("Slept 3s on web.") and f"(release v{version})" in a
        for _, a in answers
    ), answers
    _wait_all_up(deployed)


def test_wrk_through_every_kind_of_rollout_sees_no_error(
    deployed: Daemon, tmp_path: Path
) -> None:
    """wrk keeps 8 connections busy while the app is deployed, reconfigured,
    rolled back and restarted; it must report no socket error and no
    response outside 2xx/3xx."""
    changed = tmp_path / "app"
    shutil.copytree(EXAMPLE_APP, changed)
    app_py = changed / "app.py"
    app_py.write_text(app_py.read_text().replace("Hello from", "Hi from"))
    top = deployed.ctl_json("releases", "-a", APP)[0]["version"]
    steps: list[tuple[list[str], str]] = [
        (["deploy", "-a", APP, str(changed)], "Hi from"),
        (["config:set", "-a", APP, "GREETING=wrk"], f"(release v{top + 2})"),
        (["rollback", "-a", APP, f"v{top}"], f"(release v{top + 3})"),
        (["ps:restart", "-a", APP], "Hello from"),
    ]
    duration = 30
    url = f"http://127.0.0.1:{deployed.http_port}/"
    wrk = subprocess.Popen(
        ["wrk", "-t1", "-c8", f"-d{duration}s", "--timeout", "10s",
         "-H", f"Host: {APP}.localhost", url],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        time.sleep(1.0)
        began = time.monotonic()
        for args, served in steps:
            deployed.ctl(*args)
            deployed.wait_for(APP, "/", served)
            _wait_all_up(deployed)
        # Every rollout, old dynos stopped included, ends inside the run.
        assert time.monotonic() - began < duration - 6, "rollouts outlasted wrk"
        report, _ = wrk.communicate(timeout=duration + 30)
    finally:
        wrk.kill()
        wrk.wait()
    assert "requests in" in report, report
    if "Socket errors" in report or "Non-2xx or 3xx responses" in report:
        # The router logs every failed request with its H code.
        logs = deployed.ctl("logs", "-a", APP, "-s", "dynod", "-n", "1500").stdout
        told = [x for x in logs.splitlines() if "at=info" not in x]
        pytest.fail(report + "\n".join(told[-60:]))
