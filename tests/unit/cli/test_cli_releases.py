"""releases, releases:info, releases:output and rollback."""

from __future__ import annotations

import json
from typing import Any

from cli_fakeapi import Dynoctl, FakeApi


def release(version: int, status: str = "succeeded", **extra: Any) -> dict[str, Any]:
    base = {
        "id": f"rel-{version}",
        "version": version,
        "description": f"Deploy {version:07x}",
        "status": status,
        "current": False,
        "slug": {"id": f"slug-{version}"},
        "user": {"email": "root"},
        "created_at": "2026-12-03T18:12:23+00:00",
        "updated_at": "2026-12-03T18:12:23+00:00",
        "output_stream_url": f"/apps/hello/releases/{version}/output",
    }
    return base | extra


# Ascending, as the API lists them; v4 is current, v3 failed.
HISTORY = [
    release(1, description="Initial release"),
    release(2, description="Set WELCOME config var"),
    release(3, "failed"),
    release(4, current=True),
]


def test_releases_newest_first_with_heroku_columns(
    fake: FakeApi, dynoctl: Dynoctl
) -> None:
    fake.reply("GET", "/apps/hello/releases", HISTORY)
    result = dynoctl("releases")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "=== hello Releases - Current: v4"
    assert lines[1].split() == ["Rel", "Change", "By", "When"]
    assert [line.split()[0] for line in lines[3:]] == ["v4", "v3", "v2", "v1"]
    assert "Deploy 0000003 (release command failed)  root" in lines[4]
    # Every column starts at the same offset on every line.
    assert len({line.index("root") for line in lines[3:]}) == 1
    assert fake.sent()[0].query == {"limit": "15"}


def test_releases_num_and_json(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("GET", "/apps/hello/releases", HISTORY[-2:])
    result = dynoctl("releases", "-n", "2", "--json")
    assert fake.sent()[0].query == {"limit": "2"}
    assert [r["version"] for r in json.loads(result.stdout)] == [4, 3]
    assert dynoctl("releases", "-n", "0").exit_code == 2


def test_releases_info(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("GET", "/apps/hello/releases/4", HISTORY[3])
    result = dynoctl("releases:info", "v4")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "=== Release v4"
    assert "Status:  succeeded" in lines
    assert "Current: yes" in lines
    assert dynoctl("releases:info", "four").exit_code == 2


def test_releases_output_streams(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply(
        "GET", "/apps/hello/releases/3/output", chunks=[b"migrating\n", b"boom\n"]
    )
    result = dynoctl("releases:output", "v3")
    assert result.exit_code == 0
    assert result.stdout == "migrating\nboom\n"


def test_rollback_defaults_to_release_before_current(
    fake: FakeApi, dynoctl: Dynoctl
) -> None:
    fake.reply("GET", "/apps/hello/releases", HISTORY)
    fake.reply("POST", "/apps/hello/releases", release(5, current=True), 201)
    result = dynoctl("rollback")
    assert result.exit_code == 0, result.output
    # v3 failed, so the release before the current one that ran is v2.
    assert fake.sent("POST")[0].json() == {"release": "2"}
    assert "Rolling back ⬢ hello to v2... done, v5" in result.stderr
    assert "dynoctl rollback v4 -a hello" in result.stderr


def test_rollback_to_given_version(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("POST", "/apps/hello/releases", release(5, current=True), 201)
    result = dynoctl("rollback", "v1")
    assert result.exit_code == 0
    assert [(r.method, r.json()) for r in fake.sent()] == [("POST", {"release": "1"})]


def test_rollback_with_nothing_before(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("GET", "/apps/hello/releases", [release(1, current=True)])
    result = dynoctl("rollback")
    assert result.exit_code == 1
    assert "no successful release before v1" in result.stderr
    assert fake.sent("POST") == []
