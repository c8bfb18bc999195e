"""The TCP API listener: only requests with a valid token get through."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import VENV_BIN, Daemon, free_port, running_daemon

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def listening(shared_stack_dir: Path) -> Iterator[tuple[Daemon, int]]:
    port = free_port()
    flags = ["--api-listen", f"127.0.0.1:{port}"]
    with running_daemon(shared_stack_dir, flags=flags) as daemon:
        yield daemon, port


def tcp(
    port: int, path: str, token: str | None, method: str = "GET"
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers=headers, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_tokens_gate_the_tcp_listener(listening: tuple[Daemon, int]) -> None:
    daemon, port = listening
    status, error = tcp(port, "/apps", None)
    assert status == 401 and "authorizations:create" in error["message"]
    assert tcp(port, "/apps", "not-a-token")[0] == 401

    made = daemon.ctl_json("authorizations:create", "-d", "laptop")
    token = made["access_token"]["token"]
    assert tcp(port, "/apps", token) == (200, [])

    # dynoctl itself over TCP with the token.
    env = {
        **os.environ,
        "DYNOD_API": f"http://127.0.0.1:{port}",
        "DYNOD_API_TOKEN": token,
    }
    result = subprocess.run(
        [str(VENV_BIN / "dynoctl"), "apps:create", "remote"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "remote" in daemon.ctl("apps").stdout

    # Tokens cannot mint or revoke tokens remotely.
    status, error = tcp(port, "/oauth/authorizations", token, method="POST")
    assert status == 403

    listed = daemon.ctl_json("authorizations")
    assert [a["description"] for a in listed] == ["laptop"]
    assert "token" not in json.dumps(listed)
    daemon.ctl("authorizations:revoke", made["id"])
    assert tcp(port, "/apps", token)[0] == 401
