"""Procfile parsing."""

from __future__ import annotations

import pytest

from dynod.build.procfile import parse_procfile
from dynod.errors import InvalidProcfile


def test_parses_types_in_order() -> None:
    text = (
        "\ufeff# processes\n"
        "web: gunicorn app:app --bind 0.0.0.0:$PORT\n"
        "\n"
        "Worker_2:python3 worker.py\r\n"
        "  release:   ./migrate.sh  \n"
        "clock: sh -c 'echo a: b'\n"
    )
    assert parse_procfile(text) == {
        "web": "gunicorn app:app --bind 0.0.0.0:$PORT",
        "Worker_2": "python3 worker.py",
        "release": "./migrate.sh",
        "clock": "sh -c 'echo a: b'",
    }


def test_empty_procfile() -> None:
    assert parse_procfile("# nothing\n\n") == {}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("web: a\nnot a process line\n", "line 2 .* is not 'type: command'"),
        ("web a b\n", "line 1"),
        ("web.1: a\n", "line 1 names the process type 'web.1'"),
        ("w" * 64 + ": a\n", "line 1 names the process type"),
        ("web:\n", "line 1 gives process type 'web' no command"),
        ("web: a\n\nweb: b\n", "line 3 declares process type 'web' a second"),
    ],
)
def test_errors_name_the_line(text: str, words: str) -> None:
    with pytest.raises(InvalidProcfile, match=words):
        parse_procfile(text)
