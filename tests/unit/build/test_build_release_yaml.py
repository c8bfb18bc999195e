"""Reading ``bin/release`` output."""

from __future__ import annotations

import pytest

from dynod.build.release_yaml import parse_release_yaml
from dynod.errors import BuildFailed


def test_reads_default_process_types() -> None:
    text = (
        "---\n"
        "addons: []\n"
        "config_vars:\n"
        "  LANG: en_US.UTF-8\n"
        "default_process_types:\n"
        "  # the web server\n"
        '  web: "python3 -m http.server $PORT --bind \\"0.0.0.0\\""\n'
        "  worker: 'sh -c ''echo hi'''\n"
        "  clock: bundle exec clockwork  # comment\n"
        "  'quoted-type': ./run\n"
        "other: x\n"
        "  ignored: y\n"
    )
    assert parse_release_yaml(text) == {
        "web": 'python3 -m http.server $PORT --bind "0.0.0.0"',
        "worker": "sh -c 'echo hi'",
        "clock": "bundle exec clockwork",
        "quoted-type": "./run",
    }


@pytest.mark.parametrize(
    "text", ["", "---\n", "default_process_types: {}\n", "addons:\n  - x\n"]
)
def test_empty_cases(text: str) -> None:
    assert parse_release_yaml(text) == {}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("default_process_types: {web: x}\n", "inline mappings"),
        ("default_process_types:\n  - web\n", "not 'type: command'"),
        ('default_process_types:\n  web: "unterminated\n', "not closed"),
        ("default_process_types:\n  web: ''x\n", "not closed"),
        ("default_process_types:\n  web:\n", "has no command"),
    ],
)
def test_unreadable_output(text: str, words: str) -> None:
    with pytest.raises(BuildFailed, match=words):
        parse_release_yaml(text)
