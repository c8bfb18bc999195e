"""Bad input gets a clear error, changes nothing, and other apps keep running."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import pytest

from tests.support.daemon import EXAMPLE_APP, REPO, Daemon

pytestmark = pytest.mark.integration

GOOD = "steady"
FIXTURES = REPO / "tests" / "fixtures" / "apps"


@pytest.fixture(scope="module")
def steady(dynod: Daemon) -> Daemon:
    """An app that must keep answering whatever the others do."""
    dynod.ctl("apps:create", GOOD)
    dynod.ctl("deploy", "-a", GOOD, str(EXAMPLE_APP))
    dynod.wait_for(GOOD, "/", "Hello from web.1")
    return dynod


def still_fine(d: Daemon) -> None:
    status, body = d.get(GOOD, "/")
    assert status == 200 and "Hello from web.1" in body


@pytest.mark.parametrize("name", ["Bad", "a", "1abc", "x" * 31, "under_score"])
def test_invalid_app_names(steady: Daemon, name: str) -> None:
    result = steady.ctl("apps:create", name, check=False)
    assert result.returncode == 1
    assert "invalid" in result.stderr and name in result.stderr
    assert name not in steady.ctl("apps").stdout.split()
    still_fine(steady)


@pytest.mark.parametrize("pair", ["1BAD=x", "BAD-KEY=x", "DYNOD_X=1"])
def test_invalid_config_keys(steady: Daemon, pair: str) -> None:
    before = steady.ctl_json("releases", "-a", GOOD)
    key, value = pair.split("=")
    result = steady.ctl("config:set", "-a", GOOD, pair, check=False)
    assert result.returncode in (1, 2)
    assert key in result.stderr
    # The server refuses it too, whatever the client checks.
    status, error = steady.api("PATCH", f"/apps/{GOOD}/config-vars", {key: value})
    assert status == 422 and key in error["message"]
    assert steady.ctl_json("releases", "-a", GOOD) == before
    assert key not in steady.ctl_json("config", "-a", GOOD)
    still_fine(steady)


@pytest.mark.parametrize("arg", ["web=-1", "web=abc", "web=1:huge", "=3", "web=101"])
def test_invalid_formation(steady: Daemon, arg: str) -> None:
    before = [d["name"] for d in steady.ctl_json("ps", "-a", GOOD)]
    result = steady.ctl("ps:scale", "-a", GOOD, arg, check=False)
    assert result.returncode in (1, 2)
    assert result.stderr.strip()
    assert [d["name"] for d in steady.ctl_json("ps", "-a", GOOD)] == before
    still_fine(steady)


def test_unknown_process_type(steady: Daemon) -> None:
    result = steady.ctl("ps:scale", "-a", GOOD, "nosuch=1", check=False)
    assert result.returncode == 1
    assert "nosuch" in result.stderr


def _tarball(tmp_path: Path, add: object) -> Path:
    path = tmp_path / "src.tgz"
    with tarfile.open(path, "w:gz") as tar:
        add(tar)  # type: ignore[operator]
    return path


def _member(tar: tarfile.TarFile, name: str, data: bytes = b"x", **kw: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in kw.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data) if info.isreg() else None)


@pytest.mark.parametrize(
    ("kind", "builder", "words"),
    [
        ("traversal", lambda t: _member(t, "../evil"), "evil"),
        ("absolute", lambda t: _member(t, "/etc/evil"), "evil"),
        (
            "symlink out",
            lambda t: _member(
                t, "link", b"", type=tarfile.SYMTYPE, linkname="/etc/passwd"
            ),
            "link",
        ),
        (
            "device",
            lambda t: _member(
                t, "dev", b"", type=tarfile.CHRTYPE, devmajor=1, devminor=3
            ),
            "dev",
        ),
    ],
)
def test_unsafe_archives_are_refused(
    steady: Daemon, tmp_path: Path, kind: str, builder: object, words: str
) -> None:
    steady.ctl("apps:create", "victim", check=False)
    before = steady.ctl_json("releases", "-a", "victim")
    result = steady.ctl(
        "deploy", "-a", "victim", str(_tarball(tmp_path, builder)), check=False
    )
    assert result.returncode == 1, kind
    assert words in (result.stdout + result.stderr)
    assert steady.ctl_json("releases", "-a", "victim") == before
    still_fine(steady)


def test_not_a_tarball(steady: Daemon, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"this is not gzip")
    steady.ctl("apps:create", "victim", check=False)
    result = steady.ctl("deploy", "-a", "victim", str(junk), check=False)
    assert result.returncode == 1
    still_fine(steady)


def test_failing_buildpack_keeps_current_release(steady: Daemon) -> None:
    before = steady.ctl_json("releases", "-a", GOOD)
    bp = FIXTURES / "failing-buildpack"
    result = steady.ctl(
        "deploy",
        "-a",
        GOOD,
        str(EXAMPLE_APP),
        "--buildpack",
        str(bp / "buildpack"),
        check=False,
    )
    assert result.returncode == 1
    assert steady.ctl_json("releases", "-a", GOOD) == before
    still_fine(steady)


def test_bad_procfile_is_refused(steady: Daemon, tmp_path: Path) -> None:
    src = tmp_path / "app"
    src.mkdir()
    (src / "Procfile").write_text("web python3 -m http.server\n")
    steady.ctl("apps:create", "victim", check=False)
    result = steady.ctl("deploy", "-a", "victim", str(src), check=False)
    assert result.returncode == 1
    assert "Procfile" in (result.stdout + result.stderr)
    still_fine(steady)


def test_release_phase_failure_keeps_current_release(steady: Daemon) -> None:
    steady.ctl("apps:create", "relfail", check=False)
    result = steady.ctl(
        "deploy", "-a", "relfail", str(FIXTURES / "release-fails"), check=False
    )
    assert result.returncode == 1
    releases = steady.ctl_json("releases", "-a", "relfail")
    assert releases and releases[0]["status"] == "failed"
    assert not any(r["current"] for r in releases)
    still_fine(steady)


def test_app_that_never_binds_port_crashes_with_r10(
    steady: Daemon, tmp_path: Path
) -> None:
    src = tmp_path / "app"
    src.mkdir()
    (src / "Procfile").write_text("web: sleep 1000\n")
    steady.ctl("apps:create", "nobind", check=False)
    steady.ctl("apps:settings:set", "-a", "nobind", "boot_timeout=2")
    steady.ctl("deploy", "-a", "nobind", str(src))
    deadline = time.monotonic() + 20
    out = ""
    while time.monotonic() < deadline and "R10" not in out:
        time.sleep(0.5)
        out = steady.ctl("logs", "-a", "nobind", "-n", "200").stdout
    assert "Error R10 (Boot timeout)" in out
    status, _ = steady.get("nobind", "/")
    assert status == 503
    steady.ctl("ps:scale", "-a", "nobind", "web=0")
    still_fine(steady)
