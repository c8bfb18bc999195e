"""apps, apps:create, apps:info, apps:destroy and the settings commands."""

from __future__ import annotations

import json

import pytest
from cli_fakeapi import Dynoctl, FakeApi

APP = {
    "id": "3f1c",
    "name": "hello",
    "created_at": "2026-12-01T10:00:00+00:00",
    "updated_at": "2026-12-01T10:00:00+00:00",
    "released_at": "2026-12-02T10:00:00+00:00",
    "web_url": "http://hello.localhost/",
    "current_release": 3,
    "stack": {"name": "debian-12"},
}


def test_apps_lists_names_sorted(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("GET", "/apps", [dict(APP, name="zeta"), APP])
    result = dynoctl("apps")
    assert result.exit_code == 0
    assert result.stdout == "=== Apps\nhello\nzeta\n"


def test_apps_json_is_the_api_list(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("GET", "/apps", [APP])
    result = dynoctl("apps", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [APP]


def test_create_posts_name_and_prints_url(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("POST", "/apps", APP, 201)
    result = dynoctl("apps:create", "hello")
    assert result.exit_code == 0
    assert result.stdout == "http://hello.localhost/\n"
    assert result.stderr == "Creating ⬢ hello... done\n"
    (seen,) = fake.sent()
    assert (seen.method, seen.path, seen.json()) == ("POST", "/apps", {"name": "hello"})


def test_create_quiet_prints_no_progress(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("POST", "/apps", APP, 201)
    result = dynoctl("apps:create", "hello", "-q")
    assert result.exit_code == 0
    assert result.stderr == ""


def test_create_refused_prints_server_message(fake: FakeApi, dynoctl: Dynoctl) -> None:
    message = "Name 'Bad' is invalid: use lower-case letters, digits and dashes."
    fake.fail("POST", "/apps", 422, "invalid_params", message)
    result = dynoctl("apps:create", "Bad")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.endswith(f" !\n !    {message}\n")


def test_create_without_name_is_usage_error(dynoctl: Dynoctl) -> None:
    result = dynoctl("apps:create")
    assert result.exit_code == 2
    assert "Missing argument 'NAME'" in result.stderr


def test_info(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("GET", "/apps/hello", APP)
    fake.reply(
        "GET",
        "/apps/hello/formation",
        [
            {"type": "web", "quantity": 2, "size": "standard-1x", "command": "x"},
            {"type": "worker", "quantity": 0, "size": "standard-1x", "command": "y"},
        ],
    )
    result = dynoctl("apps:info")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "=== hello"
    assert "Web URL:         http://hello.localhost/" in lines
    assert "Current release: v3" in lines
    assert "Dynos:           web: 2" in lines
    assert "Stack:           debian-12" in lines


def test_missing_app_is_usage_error(dynoctl: Dynoctl) -> None:
    result = dynoctl("apps:info", DYNOD_APP="")
    assert result.exit_code == 2
    assert "No app given; pass -a NAME or set $DYNOD_APP." in result.stderr


def test_app_option_beats_environment(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("GET", "/apps/other/settings", {"boot_timeout": 60, "stop_timeout": 30})
    result = dynoctl("apps:settings", "-a", "other")
    assert result.exit_code == 0
    assert fake.sent()[0].path == "/apps/other/settings"


def test_unknown_app_fails_with_message(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.fail("GET", "/apps/hello", 404, "not_found", "Couldn't find app 'hello'.")
    result = dynoctl("apps:info")
    assert result.exit_code == 1
    assert result.stderr == " !    Couldn't find app 'hello'.\n"


def test_destroy_needs_matching_confirm(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("DELETE", "/apps/hello", APP)
    missing = dynoctl("apps:destroy", "hello")
    assert missing.exit_code == 1
    assert "needs --confirm hello" in missing.stderr
    wrong = dynoctl("apps:destroy", "hello", "--confirm", "helo")
    assert wrong.exit_code == 1
    assert "'helo' does not match 'hello'" in wrong.stderr
    assert fake.sent() == []
    done = dynoctl("apps:destroy", "hello", "--confirm", "hello")
    assert done.exit_code == 0
    assert "Destroying ⬢ hello (including all its dynos)... done" in done.stderr
    assert [(r.method, r.path) for r in fake.sent()] == [("DELETE", "/apps/hello")]


def test_settings_show_and_set(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("GET", "/apps/hello/settings", {"boot_timeout": 60, "stop_timeout": 30})
    shown = dynoctl("apps:settings")
    assert shown.exit_code == 0
    assert shown.stdout == "boot_timeout: 60\nstop_timeout: 30\n"

    fake.reply(
        "PATCH", "/apps/hello/settings", {"boot_timeout": 120, "stop_timeout": 5}
    )
    changed = dynoctl("apps:settings:set", "boot_timeout=120", "stop_timeout=5")
    assert changed.exit_code == 0
    assert changed.stdout == "boot_timeout: 120\nstop_timeout: 5\n"
    assert fake.sent("PATCH")[0].json() == {"boot_timeout": 120, "stop_timeout": 5}


def test_health_path_and_worker_surge_are_set_and_shown(
    fake: FakeApi, dynoctl: Dynoctl
) -> None:
    settings = {
        "boot_timeout": 60.0,
        "stop_timeout": 30.0,
        "health_path": "/up",
        "worker_surge": 2,
    }
    fake.reply("PATCH", "/apps/hello/settings", settings)
    changed = dynoctl("apps:settings:set", "health_path=/up", "worker_surge=2")
    assert changed.exit_code == 0
    assert changed.stdout == (
        "boot_timeout: 60\nstop_timeout: 30\nhealth_path:  /up\nworker_surge: 2\n"
    )
    assert fake.sent("PATCH")[0].json() == {"health_path": "/up", "worker_surge": 2}
    fake.reply("PATCH", "/apps/hello/settings", {**settings, "health_path": ""})
    cleared = dynoctl("apps:settings:set", "health_path=")
    assert "health_path:\n" in cleared.stdout
    assert fake.sent("PATCH")[1].json() == {"health_path": ""}


@pytest.mark.parametrize(
    "arg",
    ["boot_timeout=soon", "stop_timeout=0", "health_path=up", "worker_surge=-1",
     "worker_surge=two", "surge=1"],
)  # fmt: skip
def test_bad_setting_is_usage_error_before_any_request(
    fake: FakeApi, dynoctl: Dynoctl, arg: str
) -> None:
    result = dynoctl("apps:settings:set", arg)
    assert result.exit_code == 2
    assert repr(arg) in result.stderr
    assert fake.sent() == []
