"""Fixtures of the CLI tests: a fake API per test and a dynoctl runner for it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_fakeapi import Dynoctl, FakeApi
from click.testing import CliRunner, Result

from dynod.cli.main import cli


@pytest.fixture
def api_dir() -> Iterator[Path]:
    # Short and under /tmp: a unix socket path must fit in 108 bytes.
    path = Path(tempfile.mkdtemp(prefix="dynoctl-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake(api_dir: Path) -> Iterator[FakeApi]:
    api = FakeApi()
    api.start(unix=str(api_dir / "api.sock"))
    yield api
    api.stop()


@pytest.fixture
def dynoctl(fake: FakeApi) -> Dynoctl:
    """Run dynoctl against the fake API with app ``hello``; returns click's Result."""

    def invoke(*args: str, input: str | bytes | None = None, **env: str) -> Result:
        runner = CliRunner()
        environ = {"DYNOD_API": fake.url, "DYNOD_APP": "hello", "NO_COLOR": "1"}
        environ.update(env)
        return runner.invoke(cli, list(args), input=input, env=environ)

    return invoke
