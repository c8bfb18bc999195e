"""logs: query parameters, plain and JSON lines, and colour only on a terminal."""

from __future__ import annotations

import json

import click
from cli_fakeapi import Dynoctl, FakeApi

from dynod.cli.commands.logs import colourise

LINES = [
    b"2026-12-03T18:12:23.123456+00:00 app[web.1]: hello\n",
    b'2026-12-03T18:12:24.000001+00:00 dynod[router]: at=info method=GET path="/"\n',
]


def test_logs_passes_filters_and_prints_lines(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("GET", "/apps/hello/log-stream", chunks=LINES)
    # Colour is allowed, yet stdout is no terminal.
    result = dynoctl(
        "logs", "-n", "20", "-s", "app", "-d", "web.1", "-p", "web", NO_COLOR=""
    )
    assert result.exit_code == 0
    assert result.stdout == b"".join(LINES).decode()
    # Piped output has no colour codes.
    assert "\x1b[" not in result.stdout
    assert fake.sent()[0].query == {
        "lines": "20",
        "tail": "false",
        "source": "app",
        "dyno": "web.1",
        "type": "web",
    }


def test_logs_defaults_and_tail(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("GET", "/apps/hello/log-stream", chunks=[])
    assert dynoctl("logs", "-t").exit_code == 0
    assert fake.sent()[0].query == {"lines": "100", "tail": "true"}


def test_logs_json_lines(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("GET", "/apps/hello/log-stream", chunks=LINES)
    result = dynoctl("logs", "--json")
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first == {
        "timestamp": "2026-12-03T18:12:23.123456+00:00",
        "source": "app",
        "dyno": "web.1",
        "message": "hello",
    }
    assert second["dyno"] == "router"


def test_logs_bad_options_are_usage_errors(dynoctl: Dynoctl) -> None:
    assert dynoctl("logs", "-s", "heroku").exit_code == 2
    assert dynoctl("logs", "-n", "5000").exit_code == 2


def test_colour_marks_source_and_keeps_text() -> None:
    line = LINES[0].decode().rstrip("\n")
    coloured = colourise(line)
    assert coloured != line
    assert click.unstyle(coloured) == line
    # The same dyno type always gets the same colour.
    assert (
        colourise(line.replace("web.1", "web.2")).split("app[")[0]
        == (coloured.split("app[")[0])
    )
    assert colourise("not a log line") == "not a log line"
