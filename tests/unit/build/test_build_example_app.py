"""The example app answers as its README says (run on the host, on loopback)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[3] / "examples" / "python-app"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def base_url() -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "DYNO": "web.1",
        "DYNOD_APP_NAME": "hello",
        "DYNOD_RELEASE_VERSION": "v3",
        "GREETING": "Nice to see you",
    }
    proc = subprocess.Popen(
        [sys.executable, "app.py"], cwd=APP, env=env, stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_example_app_routes(base_url: str) -> None:
    assert _get(base_url + "/") == (
        200,
        "Hello from web.1 of hello (release v3)\nNice to see you\n",
    )
    assert _get(base_url + "/env/GREETING") == (200, "Nice to see you")
    assert _get(base_url + "/env/NOPE")[0] == 404
    status, body = _get(base_url + "/whoami")
    info = json.loads(body)
    assert status == 200
    assert info["uid"] == os.getuid()
    assert info["hostname"] == socket.gethostname()
    assert os.getpid() in info["pids"]
