"""The agent's end of the spawner socket, in the event loop.

:func:`connect_spawner` reaches the instance's spawner, starting one (in a
session of its own, so it outlives the daemon) when none answers.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from dynod.errors import RuntimeFailure
from dynod.runtime import wire
from dynod.runtime.spawner import SOCKET_NAME

Message = tuple[dict[str, Any], list[int]]
# Replies that end a request; "dyno" messages come before a "done".
_FINAL = {"started", "error", "done", "ok"}
SPAWNER_START_TIMEOUT = 10.0


class SpawnerClient:
    """Requests to the spawner and its exit events.

    ``on_exit(dyno_id, status)`` is called from the event loop in the order the
    spawner reported exits; ``on_lost()`` once if the spawner closes its end
    (it died, or exited after a ``shutdown``).
    """

    def __init__(
        self,
        sock: socket.socket,
        on_exit: Callable[[str, int], None],
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self._sock = sock
        self._on_exit = on_exit
        self._on_lost = on_lost
        self._seq = itertools.count(1)
        self._pending: dict[
            int, tuple[list[Message], asyncio.Future[list[Message]]]
        ] = {}
        self._loop = asyncio.get_running_loop()
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._readable)
        # SO_PEERCRED gives the spawner's pid, to wait for it after a shutdown.
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        self.pid = int.from_bytes(creds[:4], sys.byteorder)

    async def request(self, op: str, **fields: Any) -> list[Message]:
        """Send one request; return every message of its reply, the last final."""
        if self._sock.fileno() < 0:
            raise RuntimeFailure("The spawner connection is closed; reopen the agent.")
        seq = next(self._seq)
        future: asyncio.Future[list[Message]] = self._loop.create_future()
        self._pending[seq] = ([], future)
        data = {"op": op, "seq": seq, **fields}
        await self._loop.sock_sendall(self._sock, wire.dumps(data))
        return await future

    def _readable(self) -> None:
        while True:
            try:
                message, fds = wire.recv(self._sock)
            except BlockingIOError:
                return
            except OSError:
                message, fds = None, []
            if message is None:
                self._lost()
                return
            if message.get("op") == "exit":
                self._on_exit(message["id"], message["status"])
                continue
            entry = self._pending.get(message.get("seq", -1))
            if entry is None:
                for fd in fds:
                    os.close(fd)
                continue
            entry[0].append((message, fds))
            if message["op"] in _FINAL:
                del self._pending[message["seq"]]
                entry[1].set_result(entry[0])

    def _lost(self) -> None:
        """The spawner went away: fail whatever still waits for it."""
        self.close()
        for _, future in self._pending.values():
            if not future.done():
                future.set_exception(
                    RuntimeFailure("The spawner closed its socket; see spawner.log.")
                )
        self._pending.clear()
        if self._on_lost is not None:
            self._on_lost()

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()

    async def wait_gone(self, timeout: float = 5.0) -> None:
        """Wait for the spawner process to exit (after a ``shutdown``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if os.waitpid(self.pid, os.WNOHANG)[0] == self.pid:
                    return
            except ChildProcessError:
                try:
                    if psutil.Process(self.pid).status() == psutil.STATUS_ZOMBIE:
                        return
                except psutil.NoSuchProcess:
                    return
            await asyncio.sleep(0.01)
        raise RuntimeFailure(
            f"The spawner (pid {self.pid}) did not exit after shutdown."
        )


async def connect_spawner(
    instance: str,
    run_dir: Path,
    on_exit: Callable[[str, int], None],
    on_lost: Callable[[], None] | None = None,
) -> SpawnerClient:
    """Connect to the running spawner of ``run_dir``, or start one first."""
    path = run_dir / SOCKET_NAME
    sock = _try_connect(path)
    if sock is None:
        await _start_spawner(instance, run_dir)
        sock = _try_connect(path)
    if sock is None:
        raise RuntimeFailure(f"The spawner started but {path} does not answer.")
    return SpawnerClient(sock, on_exit, on_lost)


def _try_connect(path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    return sock


async def _start_spawner(instance: str, run_dir: Path) -> None:
    """Start the spawner detached and wait until it listens."""
    ready_r, ready_w = os.pipe()
    with open(run_dir / "spawner.log", "ab") as log:
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dynod.runtime.spawner",
                "--instance",
                instance,
                "--run-dir",
                str(run_dir),
                "--ready-fd",
                str(ready_w),
            ],
            pass_fds=[ready_w],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd="/",
        )
    os.close(ready_w)
    loop = asyncio.get_running_loop()
    try:
        ready = await asyncio.wait_for(
            loop.run_in_executor(None, os.read, ready_r, 1), SPAWNER_START_TIMEOUT
        )
    finally:
        os.close(ready_r)
    if ready != b"r":
        raise RuntimeFailure(
            f"The spawner for instance {instance} did not start; see "
            f"{run_dir / 'spawner.log'}."
        )
