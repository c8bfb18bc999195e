"""Dynos whose spawner died: known from on-disk records, watched through pidfds.

The spawner parents every dyno and reports each exit with its status.  Should
it die (a crash, ``kill -9``), its dynos keep running, re-parented to the
host's init, and nobody reports their exits any more.  Two things make them
survive it:

- :class:`RecordFiles`: the agent writes one small JSON file per running dyno
  (what the spawner said of it: app, name, PID 1, address, veth, start time)
  under ``run_dir/dynos``, so an agent that finds a cgroup its (new) spawner
  does not know can tell a live dyno from debris and adopt it.
- :func:`watch_exit`: a pidfd (pidfd_open(2), Linux 5.3) polls readable when a
  process exits, whoever its parent is, so the agent still learns of the exit,
  but not its status, which only the parent reaps.

Output: while the agent lives it keeps its own read ends of the dyno's pipes.
An agent adopting a dyno after both agent and spawner died reopens them from
``/proc/PID/fd/1`` and ``/2``: for a pipe that open yields a new end of the
same pipe (proc(5), like a FIFO), so lines written from then on are read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("dynod.runtime")

# What a record keeps of the spawner's message about a dyno.
FIELDS = ("id", "app", "name", "pid", "ip", "veth", "started_at")


class RecordFiles:
    """One JSON file per running dyno, written before anything depends on it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def save(self, message: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        record = {k: message.get(k) for k in FIELDS}
        path = self.directory / f"{record['id']}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(path)

    def load(self, dyno_id: str) -> dict[str, Any] | None:
        try:
            data = json.loads((self.directory / f"{dyno_id}.json").read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def remove(self, dyno_id: str) -> None:
        (self.directory / f"{dyno_id}.json").unlink(missing_ok=True)

    def ids(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return [p.stem for p in self.directory.glob("*.json")]


def watch_exit(pid: int, on_exit: Callable[[], None]) -> Callable[[], None]:
    """Call ``on_exit`` once ``pid`` has exited; returns a function that cancels.

    A pid already gone calls ``on_exit`` soon, from the event loop.
    """
    loop = asyncio.get_running_loop()
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        handle = loop.call_soon(on_exit)
        return handle.cancel

    def cancel() -> None:
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(pidfd)
            os.close(pidfd)

    def readable() -> None:
        cancel()
        on_exit()

    loop.add_reader(pidfd, readable)
    return cancel


def reopen_output(pid: int) -> list[int]:
    """New read ends of ``pid``'s stdout and stderr pipes, or [] if not pipes."""
    fds: list[int] = []
    for n in (1, 2):
        path = f"/proc/{pid}/fd/{n}"
        try:
            if not os.readlink(path).startswith("pipe:"):
                break
            fds.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
        except OSError as exc:
            log.warning("cannot reopen dyno output", pid=pid, fd=n, error=str(exc))
            break
    if len(fds) != 2:
        for fd in fds:
            os.close(fd)
        return []
    return fds
