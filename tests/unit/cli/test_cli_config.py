"""config, config:get, config:set and config:unset."""

from __future__ import annotations

import json

from cli_fakeapi import Dynoctl, FakeApi

RELEASE = {"id": "r5", "version": 5, "description": "Set A", "status": "succeeded"}


def test_config_aligned_and_sorted(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply(
        "GET", "/apps/hello/config-vars", {"WELCOME": "hi", "DATABASE_URL": "pg"}
    )
    result = dynoctl("config")
    assert result.exit_code == 0
    assert result.stdout == (
        "=== hello Config Vars\nDATABASE_URL: pg\nWELCOME:      hi\n"
    )


def test_config_shell_and_json(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("GET", "/apps/hello/config-vars", {"B": "two words", "A": "1"})
    shell = dynoctl("config", "--shell")
    assert shell.stdout == "A=1\nB='two words'\n"
    as_json = dynoctl("config", "--json")
    assert json.loads(as_json.stdout) == {"B": "two words", "A": "1"}


def test_config_get(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("GET", "/apps/hello/config-vars", {"A": "x=y"})
    assert dynoctl("config:get", "A").stdout == "x=y\n"
    # As Heroku: an unset var prints an empty line and is not an error.
    missing = dynoctl("config:get", "B")
    assert (missing.exit_code, missing.stdout) == (0, "\n")
    assert dynoctl("config:get", "B", "--json").stdout == "null\n"


def test_config_set_sends_values_and_reports_release(
    fake: FakeApi, dynoctl: Dynoctl
) -> None:
    fake.reply("PATCH", "/apps/hello/config-vars", {"A": "1", "Q": "a=1&b=2", "Z": "z"})
    fake.reply("GET", "/apps/hello/releases", [RELEASE])
    result = dynoctl("config:set", "A=1", "Q=a=1&b=2")
    assert result.exit_code == 0
    assert result.stderr == "Setting A, Q and restarting ⬢ hello... done, v5\n"
    assert result.stdout == "A: 1\nQ: a=1&b=2\n"
    patch = fake.sent("PATCH")[0]
    assert (patch.path, patch.json()) == (
        "/apps/hello/config-vars",
        {"A": "1", "Q": "a=1&b=2"},
    )
    assert fake.sent("GET")[0].query == {"limit": "1"}


def test_config_set_json_prints_full_map(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("PATCH", "/apps/hello/config-vars", {"A": "1", "Z": "z"})
    fake.reply("GET", "/apps/hello/releases", [RELEASE])
    result = dynoctl("config:set", "A=1", "--json")
    assert json.loads(result.stdout) == {"A": "1", "Z": "z"}


def test_config_set_bad_argument_is_usage_error(
    fake: FakeApi, dynoctl: Dynoctl
) -> None:
    result = dynoctl("config:set", "A=1", "NOVALUE")
    assert result.exit_code == 2
    assert "'NOVALUE' is not KEY=VALUE" in result.stderr
    assert fake.sent() == []
    assert dynoctl("config:set").exit_code == 2


def test_config_set_refused_by_server(fake: FakeApi, dynoctl: Dynoctl) -> None:
    message = "Config key 'DYNOD_X' is reserved; pick a name not starting with DYNOD_."
    fake.fail("PATCH", "/apps/hello/config-vars", 422, "invalid_params", message)
    result = dynoctl("config:set", "DYNOD_X=1")
    assert result.exit_code == 1
    assert result.stderr.endswith(f" !    {message}\n")


def test_config_unset_sends_nulls(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("PATCH", "/apps/hello/config-vars", {})
    fake.reply("GET", "/apps/hello/releases", [dict(RELEASE, version=6)])
    result = dynoctl("config:unset", "A", "B", "C")
    assert result.exit_code == 0
    assert result.stderr == "Unsetting A, B and C and restarting ⬢ hello... done, v6\n"
    assert fake.sent("PATCH")[0].json() == {"A": None, "B": None, "C": None}
