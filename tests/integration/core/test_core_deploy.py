"""The first complete path: deploy, serve, scale, configure, roll back, run, logs."""

from __future__ import annotations

import json
import secrets
import shutil
import time
from pathlib import Path

import pytest

from tests.support.daemon import EXAMPLE_APP, Daemon

pytestmark = pytest.mark.integration

APP = "demo"


@pytest.fixture(scope="module")
def deployed(dynod: Daemon) -> Daemon:
    dynod.ctl("apps:create", APP)
    result = dynod.ctl("deploy", "-a", APP, str(EXAMPLE_APP))
    assert "-----> " in result.stdout
    assert "Launching... done, v1" in result.stdout
    dynod.wait_for(APP, "/", "Hello from web.1")
    return dynod


def test_deploy_serves_through_the_router(deployed: Daemon) -> None:
    status, body = deployed.get(APP, "/")
    assert status == 200
    assert f"of {APP}" in body and "(release v1)" in body
    info = deployed.ctl_json("apps:info", "-a", APP)
    (v1,) = deployed.ctl_json("releases", "-a", APP)
    assert info["current_release"] == 1
    assert info["released_at"] == v1["created_at"]


def test_unknown_host_is_404(deployed: Daemon) -> None:
    status, body = deployed.get("no-such-app", "/")
    assert status == 404
    assert "no such app" in body.lower()


def test_scale_spreads_requests_over_web_dynos(deployed: Daemon) -> None:
    deployed.ctl("ps:scale", "-a", APP, "web=2")
    deployed.wait_for(APP, "/", "web.")
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while seen != {"web.1", "web.2"} and time.monotonic() < deadline:
        status, body = deployed.get(APP, "/")
        if status == 200:
            seen.add(body.split("Hello from ", 1)[1].split()[0])
    assert seen == {"web.1", "web.2"}
    dynos = deployed.ctl_json("ps", "-a", APP)
    assert sorted(d["name"] for d in dynos if d["type"] == "web") == ["web.1", "web.2"]
    deployed.ctl("ps:scale", "-a", APP, "web=1")


def test_config_change_is_a_release_visible_in_the_app(deployed: Daemon) -> None:
    deployed.ctl("config:set", "-a", APP, "GREETING=hi there", "MULTI=a=b")
    deployed.wait_for(APP, "/env/GREETING", "hi there")
    _, body = deployed.get(APP, "/env/MULTI")
    assert body.strip() == "a=b"
    config = deployed.ctl_json("config", "-a", APP)
    assert config["GREETING"] == "hi there"
    releases = deployed.ctl_json("releases", "-a", APP)
    assert "GREETING" in releases[0]["description"]


def test_config_values_never_reach_dynods_own_logs(deployed: Daemon) -> None:
    secret = "s3cret-" + secrets.token_hex(12)
    deployed.ctl("config:set", "-a", APP, f"API_TOKEN={secret}")
    deployed.wait_for(APP, "/env/API_TOKEN", secret)
    deployed.ctl("config:unset", "-a", APP, "API_TOKEN")

    # The names are logged, as on Heroku; the value nowhere dynod writes.
    stream = deployed.ctl("logs", "-a", APP, "-n", "1500").stdout
    assert "dynod[api]: Set API_TOKEN config vars by" in stream
    assert "dynod[api]: Remove API_TOKEN config vars by" in stream
    releases = deployed.ctl("releases", "-a", APP, "--json").stdout
    for text in (stream, releases, deployed.log()):
        assert secret not in text


def test_rollback_restores_old_config(deployed: Daemon) -> None:
    deployed.ctl("config:set", "-a", APP, "GREETING=first")
    deployed.wait_for(APP, "/env/GREETING", "first")
    before = deployed.ctl_json("releases", "-a", APP)[0]["version"]
    deployed.ctl("config:set", "-a", APP, "GREETING=second")
    deployed.wait_for(APP, "/env/GREETING", "second")
    deployed.ctl("rollback", "-a", APP, f"v{before}")
    deployed.wait_for(APP, "/env/GREETING", "first")
    latest = deployed.ctl_json("releases", "-a", APP)[0]
    assert latest["description"] == f"Rollback to v{before}"
    assert latest["version"] == before + 2
    assert deployed.ctl_json("config", "-a", APP)["GREETING"] == "first"


def test_rollback_restores_old_code(deployed: Daemon, tmp_path: Path) -> None:
    before = deployed.ctl_json("releases", "-a", APP)[0]["version"]
    changed = tmp_path / "app"
    shutil.copytree(EXAMPLE_APP, changed)
    app_py = changed / "app.py"
    app_py.write_text(app_py.read_text().replace("Hello from", "Howdy from"))
    deployed.ctl("deploy", "-a", APP, str(changed))
    deployed.wait_for(APP, "/", "Howdy from web.1")
    deployed.ctl("rollback", "-a", APP, f"v{before}")
    deployed.wait_for(APP, "/", "Hello from web.1")
    status, body = deployed.get(APP, "/")
    assert status == 200 and "Howdy" not in body


def test_inside_a_dyno(deployed: Daemon) -> None:
    script = (
        "import os, json, subprocess;"
        "pids=[p for p in os.listdir('/proc') if p.isdigit()];"
        "ro=subprocess.run(['touch','/usr/x'],capture_output=True).returncode;"
        "open('/app/scratch','w').write('x');"
        "print(json.dumps({'uid':os.getuid(),'pids':len(pids),'usr_ro':ro!=0,"
        "'host':os.uname().nodename,'app_rw':os.path.exists('/app/scratch')}))"
    )
    result = deployed.ctl("run", "-a", APP, "--no-tty", "--", "python3", "-c", script)
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["uid"] != 0
    assert facts["usr_ro"] is True
    assert facts["app_rw"] is True
    assert facts["host"].startswith("run.")
    # tini, bash/python and the subprocess at most: no host processes.
    assert facts["pids"] <= 4
    # The file written to /app is gone in the next dyno.
    again = deployed.ctl(
        "run", "-a", APP, "--no-tty", "--", "test", "-e", "/app/scratch", check=False
    )
    assert again.returncode == 1


def test_run_passes_exit_status(deployed: Daemon) -> None:
    result = deployed.ctl("run", "-a", APP, "--no-tty", "--", "exit 7", check=False)
    assert result.returncode == 7


def test_logs_hold_app_router_and_platform_lines(deployed: Daemon) -> None:
    deployed.get(APP, "/")
    time.sleep(0.5)
    out = deployed.ctl("logs", "-a", APP, "-n", "1500").stdout
    assert "dynod[router]: at=info method=GET" in out
    assert "dynod[api]: Release v1 created by" in out
    assert "dynod[api]: Deploy " in out
    assert "dynod[web.1]: State changed from starting to up" in out
    assert "app[web.1]:" in out
    only_app = deployed.ctl("logs", "-a", APP, "-s", "app").stdout
    assert only_app and all(" app[" in line for line in only_app.splitlines())


def test_memory_hog_is_killed_at_its_limit(deployed: Daemon) -> None:
    hog = "x = bytearray(2000 * 1024 * 1024); print('survived')"
    result = deployed.ctl(
        "run", "-a", APP, "--no-tty", "--", "python3", "-c", hog, check=False
    )
    assert "survived" not in result.stdout
    assert result.returncode == 137


def test_preboot_is_on_by_default_and_can_be_toggled(deployed: Daemon) -> None:
    def preboot() -> bool:
        listed = deployed.ctl_json("features", "-a", APP)
        return bool({f["name"]: f["enabled"] for f in listed}["preboot"])

    assert preboot() is True
    deployed.ctl("features:disable", "-a", APP, "preboot")
    assert preboot() is False
    deployed.ctl("features:enable", "-a", APP, "preboot")
    assert preboot() is True
    stream = deployed.ctl("logs", "-a", APP, "-n", "200", "-s", "dynod").stdout
    assert "Feature preboot disabled" in stream and "Feature preboot enabled" in stream
    unknown = deployed.ctl("features:enable", "-a", APP, "turbo", check=False)
    assert unknown.returncode == 1 and "preboot" in unknown.stderr
