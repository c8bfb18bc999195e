"""deploy (pack, upload, stream, verdict) and the builds commands."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from cli_fakeapi import Dynoctl, FakeApi


def build(status: str, version: int | None = 7, **extra: Any) -> dict[str, Any]:
    base = {
        "id": "b1",
        "status": status,
        "created_at": "2026-12-03T18:12:23+00:00",
        "updated_at": "2026-12-03T18:12:23+00:00",
        "output_stream_url": "/apps/hello/builds/b1/output",
        "release": {"id": "r7", "version": version} if version else None,
        "slug": None,
        "buildpack": None,
        "user": {"email": "root"},
    }
    return base | extra


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "Procfile").write_text("web: python3 app.py\n")
    (src / "pkg" / "app.py").write_text("print('hi')\n")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return src


def serve_build(fake: FakeApi, final: dict[str, Any], release_status: str) -> None:
    fake.reply("POST", "/apps/hello/builds", build("pending", None), 201)
    fake.reply(
        "GET",
        "/apps/hello/builds/b1/output",
        chunks=[b"-----> Python app detected\n", b"-----> Done\n"],
    )
    fake.reply("GET", "/apps/hello/builds/b1", final)
    fake.reply(
        "GET",
        "/apps/hello/releases/7",
        {"id": "r7", "version": 7, "status": release_status},
    )


def test_deploy_directory(fake: FakeApi, dynoctl: Dynoctl, source: Path) -> None:
    serve_build(fake, build("succeeded"), "succeeded")
    result = dynoctl("deploy", str(source), "--buildpack", "/bp/python")
    assert result.exit_code == 0, result.output
    assert result.stdout == "-----> Python app detected\n-----> Done\n"
    assert "Uploading source... " in result.stderr
    assert "Released v7" in result.stderr

    # The body is the packed directory, without .git; the buildpack rides along.
    upload = fake.sent("POST")[0]
    assert upload.headers["Content-Type"] == "application/gzip"
    assert upload.query == {"buildpack": "/bp/python"}
    assert int(upload.headers["Content-Length"]) == len(upload.body)
    with tarfile.open(fileobj=io.BytesIO(upload.body), mode="r:gz") as tar:
        names = set(tar.getnames())
    assert {"Procfile", "pkg/app.py"} <= names
    assert not any(n.startswith(".git") for n in names)


def test_deploy_tarball_as_is(fake: FakeApi, dynoctl: Dynoctl, tmp_path: Path) -> None:
    serve_build(fake, build("succeeded"), "succeeded")
    tarball = tmp_path / "app.tar.gz"
    tarball.write_bytes(gzip.compress(b"not inspected by the client"))
    result = dynoctl("deploy", str(tarball), "-m", "Deploy abc123")
    assert result.exit_code == 0, result.output
    upload = fake.sent("POST")[0]
    assert upload.body == tarball.read_bytes()
    assert upload.query == {"description": "Deploy abc123"}


def test_deploy_failed_build_exits_1(
    fake: FakeApi, dynoctl: Dynoctl, source: Path
) -> None:
    serve_build(fake, build("failed", None), "succeeded")
    result = dynoctl("deploy", str(source))
    assert result.exit_code == 1
    assert "-----> Done" in result.stdout
    assert " !    Build b1 failed" in result.stderr
    assert "Released" not in result.stderr


def test_deploy_failed_release_phase_exits_1(
    fake: FakeApi, dynoctl: Dynoctl, source: Path
) -> None:
    serve_build(fake, build("succeeded"), "failed")
    result = dynoctl("deploy", str(source))
    assert result.exit_code == 1
    assert "Release v7 failed in its release phase" in result.stderr
    assert "releases:output v7" in result.stderr


def test_deploy_json_keeps_stdout_for_json(
    fake: FakeApi, dynoctl: Dynoctl, source: Path
) -> None:
    serve_build(fake, build("succeeded"), "succeeded")
    result = dynoctl("deploy", str(source), "--json", "-q")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["status"] == "succeeded"
    assert result.stderr == "-----> Python app detected\n-----> Done\n"


def test_deploy_missing_source_is_usage_error(dynoctl: Dynoctl, tmp_path: Path) -> None:
    result = dynoctl("deploy", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_deploy_refused_upload(fake: FakeApi, dynoctl: Dynoctl, source: Path) -> None:
    fake.fail(
        "POST",
        "/apps/hello/builds",
        413,
        "too_large",
        "The source is 2 GB; the limit is 1 GB.",
    )
    result = dynoctl("deploy", str(source))
    assert result.exit_code == 1
    assert result.stderr.endswith(" !    The source is 2 GB; the limit is 1 GB.\n")


def test_builds_table_newest_first(fake: FakeApi, dynoctl: Dynoctl) -> None:
    older = build("failed", None, id="b0", created_at="2026-12-02T10:00:00+00:00")
    fake.reply("GET", "/apps/hello/builds", [older, build("succeeded")])
    result = dynoctl("builds")
    lines = result.stdout.splitlines()
    assert lines[0] == "=== hello Builds"
    assert lines[1].split() == ["ID", "Status", "Release", "By", "When"]
    assert lines[3].split()[:4] == ["b1", "succeeded", "v7", "root"]
    assert lines[4].split()[:3] == ["b0", "failed", "root"]


def test_builds_output_latest(fake: FakeApi, dynoctl: Dynoctl) -> None:
    older = build("failed", None, id="b0", created_at="2026-12-02T10:00:00+00:00")
    fake.reply("GET", "/apps/hello/builds", [build("succeeded"), older])
    fake.reply("GET", "/apps/hello/builds/b1/output", chunks=[b"out\n"])
    result = dynoctl("builds:output")
    assert (result.exit_code, result.stdout) == (0, "out\n")


def test_builds_cancel_latest_running(fake: FakeApi, dynoctl: Dynoctl) -> None:
    running = build("pending", None, id="b2", created_at="2026-12-03T19:00:00+00:00")
    fake.reply("GET", "/apps/hello/builds", [build("succeeded"), running])
    fake.reply("DELETE", "/apps/hello/builds/b2", running)
    result = dynoctl("builds:cancel")
    assert result.exit_code == 0
    assert result.stderr == "Cancelling build b2 of ⬢ hello... done\n"
    assert fake.sent("DELETE")[0].path == "/apps/hello/builds/b2"


def test_builds_cancel_with_none_running(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("GET", "/apps/hello/builds", [build("succeeded")])
    result = dynoctl("builds:cancel")
    assert result.exit_code == 1
    assert "has no build running" in result.stderr


@pytest.mark.parametrize("given", ["python", "/srv/bp/static", "bp/custom", "./bp"])
def test_deploy_sends_a_relative_buildpack_path_as_absolute(
    fake: FakeApi,
    dynoctl: Dynoctl,
    source: Path,
    given: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(source)
    serve_build(fake, build("succeeded"), "succeeded")
    result = dynoctl("deploy", str(source), "--buildpack", given)
    assert result.exit_code == 0, result.output
    relative = "/" in given and not given.startswith("/")
    expected = str((source / given).resolve()) if relative else given
    assert fake.sent("POST")[0].query == {"buildpack": expected}
