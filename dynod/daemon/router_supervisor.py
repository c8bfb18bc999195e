"""Runs the router processes and collects their request log lines.

The router is its own process group, started in its own session so it keeps
serving while dynod restarts; a new dynod finds it by its pid file and adopts it
instead of starting another.  Request log lines come back as datagrams on
``<run_dir>/logs.sock`` (``APP\\nLINE``); when dynod is down the router drops
them rather than wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import structlog

from dynod.certs.publish import cert_dir
from dynod.config import Config

log = structlog.get_logger("dynod.router.supervisor")

# How often dynod checks that the router is still alive.
CHECK_INTERVAL = 1.0


def router_pid(run_dir: Path, instance: str) -> int | None:
    """The pid of this instance's running router, if there is one."""
    try:
        pid = int((run_dir / "router.pid").read_text())
        cmdline = psutil.Process(pid).cmdline()
    except (OSError, ValueError, psutil.Error):
        return None
    if "dynod.router" in cmdline and instance in cmdline:
        return pid
    return None


class RouterSupervisor:
    def __init__(self, config: Config, on_line: Callable[[str, str], None]) -> None:
        self.config = config
        self.on_line = on_line
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        # The router this daemon started, if it did (else it adopted one).
        self._proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        # Listen for log lines first, so the router's first requests are logged.
        path = self.config.run_dir / "logs.sock"
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.setblocking(False)
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

        if self._running():
            log.info("adopted running router")
        else:
            self._spawn()
        self._task = asyncio.ensure_future(self._watch())

    def _spawn(self) -> None:
        c = self.config
        argv = [
            sys.executable,
            "-m",
            "dynod.router",
            "--instance",
            c.instance,
            "--run-dir",
            str(c.run_dir),
            "--bind",
            c.router_bind,
            "--http-port",
            str(c.http_port),
            "--workers",
            str(c.router_workers),
            # HTTPS with the certificates dynod publishes (dynod.certs.publish).
            "--https-port",
            str(c.https_port),
            "--cert-dir",
            str(cert_dir(c.run_dir)),
        ]
        # Its own session: a signal to dynod's process group leaves it running.
        self._proc = subprocess.Popen(
            argv,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            close_fds=True,
        )
        log.info("started router", port=c.http_port, workers=c.router_workers)

    def _running(self) -> bool:
        """Whether the instance has a router, serving or still starting.

        The pid file appears only once every worker listens, which on a busy
        host can take seconds: a router this daemon started counts from the
        start, or a second one would be started beside it (and outlive it,
        since SO_REUSEPORT lets both bind).  Polling it also reaps it.
        """
        if self._proc is not None and self._proc.poll() is None:
            return True
        return router_pid(self.config.run_dir, self.config.instance) is not None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            if not self._running():
                log.warning("router is not running; starting it again")
                self._spawn()

    def _readable(self) -> None:
        assert self._sock is not None
        for _ in range(1000):
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return
            # APP\nLINE records, several to a datagram, joined by newlines.
            fields = data.decode("utf-8", "replace").split("\n")
            for app, line in zip(fields[::2], fields[1::2], strict=False):
                if line:
                    self.on_line(app, line)

    async def close(self) -> None:
        """Stop listening; the router keeps serving for the next daemon."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()


def stop_router(run_dir: Path, instance: str, timeout: float = 15.0) -> None:
    """SIGTERM the instance's router and wait for it to go (SIGKILL after timeout)."""
    pid = router_pid(run_dir, instance)
    if pid is None:
        return
    try:
        proc = psutil.Process(pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout)
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.Error):
            for child in proc.children(recursive=True):
                child.kill()
            proc.kill()
    except psutil.Error:
        pass
    deadline = time.monotonic() + 2
    while router_pid(run_dir, instance) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
