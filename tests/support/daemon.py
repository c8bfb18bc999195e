"""A real dynod for tests and benchmarks: its own instance, dirs, subnet, ports.

The daemon runs as a subprocess exactly as users run it (``dynod serve``);
tests drive it with the real ``dynoctl`` and real HTTP through its router.
:meth:`Daemon.destroy` stops it and runs ``dynod teardown``, so no dyno,
router, cgroup, link or firewall rule outlives it.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.names import new_instance

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
EXAMPLE_APP = REPO / "examples" / "python-app"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


@dataclass
class Daemon:
    instance: str
    state_dir: Path
    run_dir: Path
    http_port: int
    subnet: str
    flags: list[str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DYNOD_API": f"unix:{self.run_dir / 'api.sock'}"}

    def ctl(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 300,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run dynoctl; with check, fail the test showing its output."""
        result = subprocess.run(
            [str(VENV_BIN / "dynoctl"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"dynoctl {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def ctl_json(self, *args: str) -> Any:
        return json.loads(self.ctl(*args, "--json").stdout)

    def api(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        """Call the API directly (bypassing dynoctl's own checks)."""
        conn = _UnixHTTPConnection(str(self.run_dir / "api.sock"))
        data = None if body is None else json.dumps(body)
        conn.request(
            method, path, body=data, headers={"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        payload = json.loads(response.read() or b"null")
        conn.close()
        return response.status, payload

    def get(self, app: str, path: str = "/", timeout: float = 10) -> tuple[int, str]:
        """GET through the router with the app's Host."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}",
            headers={"Host": f"{app}.localhost"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_for(self, app: str, path: str, text: str, timeout: float = 30) -> str:
        """Poll through the router until the body contains ``text``."""
        deadline = time.monotonic() + timeout
        body = ""
        while time.monotonic() < deadline:
            try:
                status, body = self.get(app, path)
                if status == 200 and text in body:
                    return body
            except OSError:
                pass
            time.sleep(0.1)
        pytest.fail(f"{app}{path} never answered with {text!r}; last body: {body!r}")

    def logs(self, app: str, *args: str) -> list[str]:
        """``dynoctl logs`` of ``app`` (with ``args``), one line each."""
        return self.ctl("logs", "-a", app, *args).stdout.splitlines()

    def wait_log(self, app: str, text: str, *args: str, timeout: float = 20) -> str:
        """Poll the last 1500 lines until one holds ``text``; that line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.logs(app, "-n", "1500", *args):
                if text in line:
                    return line
            time.sleep(0.2)
        pytest.fail(f"no log line with {text!r}; last: {self.logs(app, '-n', '20')}")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "dynod"), "serve", *self.flags],
            stdout=open(self.state_dir.parent / "dynod.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.state_dir.parent / "dynod.log").read_text()
                pytest.fail(f"dynod exited with {self.proc.returncode}:\n{log}")
            if self.ctl("apps", check=False).returncode == 0:
                return
            time.sleep(0.1)
        pytest.fail("dynod did not answer on its API socket within 120 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return (self.state_dir.parent / "dynod.log").read_text()

    def destroy(self) -> None:
        """Stop the daemon and remove every kernel object its instance made."""
        self.stop()
        subprocess.run(
            [str(VENV_BIN / "dynod"), "teardown", *self.flags],
            check=False,
            capture_output=True,
            timeout=120,
        )


def make_daemon(base: Path, stack_dir: Path, settings: str = "") -> Daemon:
    """A daemon of its own under ``base``; ``settings`` is its dynod.toml."""
    (base / "none.toml").write_text(settings)
    instance = new_instance()
    subnet = f"10.{random.randrange(200, 250)}.{random.randrange(0, 255)}.0/24"
    state_dir, run_dir = base / "state", base / "run"
    http_port = free_port()
    flags = [
        "--instance",
        instance,
        "--state-dir",
        str(state_dir),
        "--run-dir",
        str(run_dir),
        "--http-port",
        str(http_port),
        "--https-port",
        str(free_port()),
        "--dyno-subnet",
        subnet,
        "--router-bind",
        "127.0.0.1",
        "--stack-dir",
        str(stack_dir),
        "--config",
        str(base / "none.toml"),
    ]
    return Daemon(instance, state_dir, run_dir, http_port, subnet, flags)


@contextmanager
def running_daemon(
    stack_dir: Path,
    settings: str = "",
    *,
    prefix: str = "dynod-it-",
    flags: Sequence[str] = (),
) -> Iterator[Daemon]:
    """A started daemon of its own (:func:`make_daemon`, plus ``flags``); at
    the end it is stopped and torn down, and its directory removed."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    daemon = make_daemon(base, stack_dir, settings)
    daemon.flags += flags
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.destroy()
        shutil.rmtree(base, ignore_errors=True)
