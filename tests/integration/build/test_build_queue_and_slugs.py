"""Deploys of one app queue (and a queued one can be cancelled); slugs that no
kept release needs are removed, and a rollback to one names what happened.

A daemon of its own that keeps the slugs of each app's newest KEPT releases
and collects without a grace period, so removals happen in a test's time.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.daemon import EXAMPLE_APP, REPO, VENV_BIN, Daemon, running_daemon

pytestmark = pytest.mark.integration

KEPT = 2
HANGING = REPO / "tests" / "fixtures" / "apps" / "hanging"


@pytest.fixture(scope="module")
def daemon(shared_stack_dir: Path) -> Iterator[Daemon]:
    settings = f"slugs_kept_per_app = {KEPT}\nslug_gc_grace = 0\n"
    with running_daemon(shared_stack_dir, settings) as d:
        yield d


def eventually(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"never: {what}")
        time.sleep(0.2)


def greeting_app(base: Path, word: str) -> Path:
    """The example app answering with ``word`` instead of "Hello"."""
    src = base / word
    shutil.copytree(EXAMPLE_APP, src)
    app_py = src / "app.py"
    app_py.write_text(app_py.read_text().replace("Hello from", f"{word} from"))
    return src


def archives(d: Daemon) -> set[str]:
    return {p.stem for p in (d.state_dir / "slugs" / "sha256").glob("*.tgz")}


def unpacked(d: Daemon) -> set[str]:
    return {
        p.name.split("-")[0] for p in (d.state_dir / "slugs" / "unpacked").iterdir()
    }


def slug_of(d: Daemon, app: str, version: int) -> str:
    status, release = d.api("GET", f"/apps/{app}/releases/{version}")
    assert status == 200
    return str(release["slug"]["id"])


def test_slugs_of_old_releases_are_removed_and_rollback_says_so(
    daemon: Daemon, tmp_path: Path
) -> None:
    app = "rolling"
    daemon.ctl("apps:create", app)
    words = ["One", "Two", "Three", "Four"]
    for word in words:
        daemon.ctl("deploy", "-a", app, str(greeting_app(tmp_path, word)))
    daemon.wait_for(app, "/", "Four from web.1")
    slugs = {n: slug_of(daemon, app, n) for n in range(1, 5)}
    assert len(set(slugs.values())) == 4

    # The newest KEPT releases keep their archives; only the current is unpacked.
    eventually(lambda: archives(daemon) == {slugs[3], slugs[4]}, "old slugs removed")
    eventually(lambda: unpacked(daemon) == {slugs[4]}, "old trees removed")

    result = daemon.ctl("rollback", "-a", app, "v1", check=False)
    assert result.returncode == 1
    assert (
        "slug of v1" in result.stderr and "removed to save disk space" in result.stderr
    )
    assert daemon.ctl_json("releases", "-a", app)[0]["version"] == 4

    daemon.ctl("rollback", "-a", app, "v3")
    daemon.wait_for(app, "/", "Three from web.1")

    # A destroyed app leaves no slug, tree or build cache behind.
    daemon.ctl("apps:destroy", app, "--confirm", app)
    eventually(lambda: not archives(daemon) and not unpacked(daemon), "all removed")
    assert not (daemon.state_dir / "cache" / app).exists()


def test_deploys_queue_and_a_queued_one_can_be_cancelled(
    daemon: Daemon, tmp_path: Path
) -> None:
    app = "queued"
    daemon.ctl("apps:create", app)

    def deploy(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(VENV_BIN / "dynoctl"), "deploy", "-a", app, *args],
            env=daemon.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def builds() -> list[dict[str, object]]:
        found: list[dict[str, object]] = daemon.ctl_json("builds", "-a", app)
        return found

    hanging = deploy(str(HANGING / "app"), "--buildpack", str(HANGING / "buildpack"))
    eventually(lambda: len(builds()) == 1, "the first build started")
    waiting = deploy(str(greeting_app(tmp_path, "Queued")))
    try:
        eventually(lambda: len(builds()) == 2, "the second build queued")
        second, first = (str(b["id"]) for b in builds())
        # (builds:output would follow the build to its end: read the file.)
        output = daemon.state_dir / "output" / "builds" / f"{second}.log"
        waits = "Waiting for the app's previous build or release to finish"
        eventually(lambda: waits in output.read_text(), "the queued build says so")

        daemon.ctl("builds:cancel", "-a", app, second)
        out, _ = waiting.communicate(timeout=30)
        assert waiting.returncode == 1
        assert f"Build {second} was cancelled before it ran" in out
        # The first build was never disturbed: it still runs, until cancelled.
        assert hanging.poll() is None
        daemon.ctl("builds:cancel", "-a", app, first)
        hanging.communicate(timeout=30)
        assert hanging.returncode == 1
        assert [b["status"] for b in builds()] == ["failed", "failed"]
    finally:
        for proc in (hanging, waiting):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

    # The queue is free: the next deploy builds and goes live at once.
    daemon.ctl("deploy", "-a", app, str(greeting_app(tmp_path, "After")))
    daemon.wait_for(app, "/", "After from web.1")
