"""Real processes for the router tests: backends, the router, its run dir.

Test modules import the fixtures from here (this directory has no conftest so
that other areas' fixtures never collide with these).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
BACKEND = Path(__file__).with_name("router_backend.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Backend:
    name: str
    port: int
    proc: subprocess.Popen[bytes]

    def dyno(self, dyno_name: str | None = None) -> dict[str, Any]:
        return {"name": dyno_name or self.name, "addr": "127.0.0.1", "port": self.port}


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def backends(instance: str) -> Iterator[Callable[..., Backend]]:
    """Starts backends by name (and port, if given); every one is stopped at the
    end of the test."""
    started: list[Backend] = []

    def start(name: str, port: int | None = None) -> Backend:
        port = port or free_port()
        proc = subprocess.Popen(
            [sys.executable, str(BACKEND), str(port), name, instance],
            stdout=subprocess.PIPE,
        )
        backend = Backend(name, port, proc)
        started.append(backend)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        return backend

    yield start
    for backend in started:
        _stop(backend.proc, signal.SIGKILL)


def app(
    hosts: list[str], state: str = "running", dynos: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"hosts": hosts, "state": state, "dynos": dynos or []}


@dataclass
class Router:
    instance: str
    run_dir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    version: int = 0
    sockets: list[socket.socket] = field(default_factory=list)

    def write_routes(self, apps: dict[str, Any], raw: bytes | None = None) -> None:
        """Replace routes.json atomically, as dynod does."""
        self.version += 1
        data = (
            raw
            if raw is not None
            else json.dumps({"version": self.version, "apps": apps}).encode()
        )
        tmp = self.run_dir / "routes.json.tmp"
        tmp.write_bytes(data)
        os.rename(tmp, self.run_dir / "routes.json")

    def set_routes(self, apps: dict[str, Any]) -> None:
        """Replace the table and wait long enough for every worker to see it."""
        self.write_routes(apps)
        time.sleep(0.2)

    def start(self, *extra: str, workers: int = 2) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "dynod.router",
                "--instance", self.instance,
                "--run-dir", str(self.run_dir),
                "--bind", "127.0.0.1",
                "--http-port", str(self.port),
                "--workers", str(workers),
                *extra,
            ],
            cwd=ROOT,
        )  # fmt: skip
        # The pid file appears once every worker listens.
        pid_file = self.run_dir / "router.pid"
        deadline = time.monotonic() + 15
        while not pid_file.exists():
            assert self.proc.poll() is None, "the router exited while starting"
            assert time.monotonic() < deadline, "the router did not start in 15 s"
            time.sleep(0.02)

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)

    def get(
        self,
        host: str,
        path: str = "/echo",
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        """One request on a new connection."""
        conn = self.connect()
        try:
            conn.request(
                method, path, body=body, headers={"Host": host, **(headers or {})}
            )
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            conn.close()

    def log_socket(self) -> socket.socket:
        """Bind logs.sock as dynod does; closed and removed after the test."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.run_dir / "logs.sock"))
        sock.settimeout(5)
        self.sockets.append(sock)
        return sock

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        _stop(self.proc)
        return self.proc.returncode


@pytest.fixture
def router(instance: str) -> Iterator[Router]:
    """A router (not yet started) with its own run dir and free port."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"{instance}-"))
    r = Router(instance, run_dir, free_port())
    try:
        yield r
    finally:
        r.stop()
        for sock in r.sockets:
            sock.close()
        shutil.rmtree(run_dir, ignore_errors=True)


def echo(body: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(body)
    doc["h"] = {k.lower(): v for k, v in doc["headers"]}
    return doc


def read_logs(
    sock: socket.socket, count: int, wait: float = 2.0
) -> list[tuple[str, str]]:
    """Up to ``count`` datagrams as (app, line), waiting at most ``wait`` seconds."""
    out: list[tuple[str, str]] = []
    sock.settimeout(wait)
    try:
        while len(out) < count:
            # Several APP\nLINE records may share a datagram.
            fields = sock.recv(65536).decode().split("\n")
            out += zip(fields[::2], fields[1::2], strict=True)
    except TimeoutError:
        pass
    return out
