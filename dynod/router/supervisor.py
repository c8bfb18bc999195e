"""The router's entry process: forks the workers, restarts them, stops them.

Life of the entry process:

1. Fork ``workers`` worker processes; each listens on the shared port.
2. Once every worker is listening, write the pid file (``router.pid``).  Its
   appearance therefore means "the router is serving".
3. Restart any worker that dies (at most once a second per slot), unless it
   died because it cannot listen, which no restart fixes: then stop all.
4. On SIGTERM or SIGINT, pass SIGTERM to the workers, give them the drain
   timeout plus a margin, SIGKILL stragglers (logged), remove the pid file.

The entry process runs no event loop; it waits in ``sigtimedwait`` with the
signals it handles blocked, so signals are acted on from its main loop only.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import structlog

from dynod.router.worker import EXIT_CANNOT_LISTEN

log = structlog.get_logger("dynod.router")

_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
_READY_TIMEOUT = 10.0
_RESTART_SPACING = 1.0
_KILL_MARGIN = 2.0

WorkerMain = Callable[[int | None], int]


class Supervisor:
    """Keeps ``count`` workers running ``worker_main`` until asked to stop."""

    def __init__(
        self, worker_main: WorkerMain, count: int, pid_file: Path, drain_timeout: float
    ) -> None:
        self._worker_main = worker_main
        self._count = count
        self._pid_file = pid_file
        self._drain_timeout = drain_timeout
        self._slots: dict[int, int] = {}  # pid -> slot
        self._started: dict[int, float] = {}  # slot -> monotonic start time
        self._fatal = False

    def run(self) -> int:
        """Supervise until stopped; returns the exit status for the process."""
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)

        # Start every worker and wait until all of them listen.
        ready_r, ready_w = os.pipe()
        for slot in range(self._count):
            self._spawn(slot, ready_w)
        os.close(ready_w)
        ready = self._wait_ready(ready_r)
        os.close(ready_r)
        if not ready:
            log.error("router workers did not start", port_in_use_or_bad_bind=True)
            self._stop_all()
            return 1
        self._pid_file.write_text(f"{os.getpid()}\n")

        # Restart dead workers until a stop signal arrives.
        try:
            while not self._fatal:
                info = signal.sigtimedwait(_SIGNALS, 1.0)
                if info is not None and info.si_signo in (
                    signal.SIGTERM,
                    signal.SIGINT,
                ):
                    break
                self._reap_and_restart()
        finally:
            self._stop_all()
            with contextlib.suppress(FileNotFoundError):
                self._pid_file.unlink()
        return 1 if self._fatal else 0

    def _spawn(self, slot: int, ready_fd: int | None) -> None:
        pid = os.fork()
        if pid == 0:
            # The worker handles its own signals on its event loop.
            status = 1
            try:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
                status = self._worker_main(ready_fd)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(status)
        self._slots[pid] = slot
        self._started[slot] = time.monotonic()

    def _wait_ready(self, fd: int) -> bool:
        """True once every worker wrote its ready byte, False on death or timeout."""
        deadline = time.monotonic() + _READY_TIMEOUT
        got = 0
        while got < self._count:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return False
            chunk = os.read(fd, 64)
            if not chunk:
                # Every write end is closed: some worker died before listening.
                return False
            got += len(chunk)
        return True

    def _reap_and_restart(self) -> None:
        for pid, status in _reap():
            slot = self._slots.pop(pid, None)
            if slot is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if code == EXIT_CANNOT_LISTEN:
                log.error("router worker cannot listen; stopping", pid=pid)
                self._fatal = True
                return
            log.warning("router worker died; restarting", pid=pid, status=code)
            # A worker dying at once would otherwise be restarted in a hot loop.
            since = time.monotonic() - self._started[slot]
            if since < _RESTART_SPACING:
                time.sleep(_RESTART_SPACING - since)
            self._spawn(slot, None)

    def _stop_all(self) -> None:
        """SIGTERM every worker, wait for the drain, SIGKILL what is left."""
        for pid in self._slots:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self._drain_timeout + _KILL_MARGIN
        while self._slots and time.monotonic() < deadline:
            for pid, _ in _reap():
                self._slots.pop(pid, None)
            if self._slots:
                signal.sigtimedwait({signal.SIGCHLD}, 0.05)
        for pid in list(self._slots):
            log.warning("router worker did not stop in time; killing", pid=pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            del self._slots[pid]


def _reap() -> list[tuple[int, int]]:
    """Every child that has exited, as (pid, wait status)."""
    done = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        done.append((pid, status))
    return done
