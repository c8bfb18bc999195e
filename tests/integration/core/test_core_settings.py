"""Settings from dynod.toml take effect: the release phase's time limit, which
decides with the release command whether a release goes live, and dyno sizes.

A daemon of its own, whose release phase may run for RELEASE_TIMEOUT seconds,
so the limit is reached in a test's time rather than in an hour.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import EXAMPLE_APP, Daemon, running_daemon

pytestmark = pytest.mark.integration

APP = "phased"
RELEASE_TIMEOUT = 3
SETTINGS = f"""
release_timeout = {RELEASE_TIMEOUT}
[sizes.tiny]
memory_mb = 96
pids = 48
cpu_shares = 1
[sizes.standard-2x]
pids = 600
"""


@pytest.fixture(scope="module")
def live(shared_stack_dir: Path) -> Iterator[Daemon]:
    """A daemon whose app is deployed and serving, with no release phase yet."""
    with running_daemon(shared_stack_dir, SETTINGS) as daemon:
        daemon.ctl("apps:create", APP)
        daemon.ctl("deploy", "-a", APP, str(EXAMPLE_APP))
        daemon.wait_for(APP, "/", "Hello from web.1")
        yield daemon


def with_release_command(tmp_path: Path, command: str, marker: str) -> Path:
    """The example app with a ``release:`` command and a changed greeting."""
    src = tmp_path / "app"
    shutil.copytree(EXAMPLE_APP, src)
    (src / "Procfile").write_text(
        f"release: {command}\n" + (src / "Procfile").read_text()
    )
    app_py = src / "app.py"
    app_py.write_text(app_py.read_text().replace("Hello from", f"{marker} from"))
    return src


def current_version(d: Daemon) -> int:
    (current,) = [
        r["version"] for r in d.ctl_json("releases", "-a", APP) if r["current"]
    ]
    return int(current)


def test_a_failing_release_phase_keeps_the_current_release_serving(
    live: Daemon, tmp_path: Path
) -> None:
    before = current_version(live)
    src = with_release_command(tmp_path, "echo migrating; exit 3", "Broken")
    result = live.ctl("deploy", "-a", APP, str(src), check=False)
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert "migrating" in out and "failed with exit status 3" in out
    newest = live.ctl_json("releases", "-a", APP)[0]
    assert newest["status"] == "failed" and newest["version"] > before
    assert current_version(live) == before
    status, body = live.get(APP, "/")
    assert status == 200 and "Hello from" in body and "Broken" not in body


def test_a_release_phase_past_its_time_limit_is_stopped_and_fails(
    live: Daemon, tmp_path: Path
) -> None:
    before = current_version(live)
    src = with_release_command(tmp_path, "echo started; sleep 600", "Hung")
    started = time.monotonic()
    result = live.ctl("deploy", "-a", APP, str(src), check=False, timeout=120)
    took = time.monotonic() - started
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert "started" in out
    assert f"did not finish within {RELEASE_TIMEOUT} seconds" in out
    # Stopped at the limit (plus the SIGTERM the sleep obeys), not at 600 s.
    assert took < 60
    assert current_version(live) == before
    # The app is free again: the next change goes through at once.
    live.ctl("config:set", "-a", APP, "AFTER=1")
    assert current_version(live) > before
    live.wait_for(APP, "/", "Hello from")


def test_sizes_from_the_settings_limit_dynos(live: Daemon) -> None:
    out = live.ctl(
        "run", "-a", APP, "-s", "tiny", "--no-tty", "--", "echo $MEMORY_AVAILABLE"
    )
    assert out.stdout.split()[-1] == "96"
    live.ctl("ps:type", "-a", APP, "web=tiny")
    live.wait_for(APP, "/", "Hello from web.1")
    assert {d["size"] for d in live.ctl_json("ps", "-a", APP)} == {"tiny"}
    refused = live.ctl("ps:type", "-a", APP, "web=huge", check=False)
    assert refused.returncode == 1 and "tiny" in refused.stderr
    live.ctl("ps:type", "-a", APP, "web=standard-1x")
