"""The spawner: a small long-lived process that parents every dyno of a daemon.

Run as ``python -m dynod.runtime.spawner --instance NAME --run-dir DIR``.  It
listens on ``DIR/spawner.sock`` (see :mod:`dynod.runtime.wire`) for one agent
at a time and, because the launcher is already imported, starts a dyno with two
forks instead of a cold interpreter.  As a child subreaper it inherits every
dyno's PID 1, reaps it and reports its status.  It keeps a copy of each dyno's
stdout/stderr read ends, so the dyno's writes never meet a closed pipe while no
agent is connected (should the spawner die too, each dyno is a reader of its
own pipes: see the launcher); a reconnecting agent gets the list of dynos and
fresh copies of those fds.  It lives in a session of its own, so it outlives dynod.

Requests (each with a ``seq``; replies repeat it):

==========  ==============================================  ====================
op          does                                            reply
==========  ==============================================  ====================
start       launches ``plan``                               ``pid``, ``marks``,
                                                            fds out, err (or
                                                            the attach fd)
list        one ``dyno`` message per dyno (with its fds),   ``done``
            exited ones included with their ``status``
forget      drops an exited dyno's record and fds           ``ok``
shutdown    SIGKILLs every dyno's PID 1, reaps, exits       ``ok``
==========  ==============================================  ====================

Event: ``{"op": "exit", "id": ..., "status": ...}`` when a dyno's PID 1 is reaped.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dynod.errors import RuntimeFailure
from dynod.runtime import syscalls as sc
from dynod.runtime import wire
from dynod.runtime.launcher import Stdio, launch
from dynod.runtime.plan import LaunchPlan

SOCKET_NAME = "spawner.sock"
# The log pipes' buffer: about 10,000 lines of 100 bytes.
LOG_PIPE_BYTES = 1024 * 1024
SCRATCH_NAME = "dyno-root"


@dataclass
class Record:
    """A dyno the spawner started; ``status`` is set once its PID 1 is reaped."""

    id: str
    app: str
    name: str
    pid: int
    ip: str | None
    veth: str | None
    started_at: float
    fds: list[int] = field(default_factory=list)
    status: int | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["fds"]
        return data


class Spawner:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.scratch = run_dir / SCRATCH_NAME
        self.records: dict[str, Record] = {}
        self.client: socket.socket | None = None
        self.selector = selectors.DefaultSelector()
        self.running = True

    def serve(self, ready_fd: int | None) -> None:
        """Accept agents and run requests until a ``shutdown``."""
        # Orphaned dyno PID 1s come to us, not to the host's init.
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
        self.scratch.mkdir(mode=0o700, exist_ok=True)

        # SIGCHLD only wakes the loop; reaping happens there.
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_w.fileno())
        self.selector.register(wake_r, selectors.EVENT_READ, "wake")

        path = self.run_dir / SOCKET_NAME
        path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        listener.bind(str(path))
        os.chmod(path, 0o600)
        listener.listen(4)
        self.selector.register(listener, selectors.EVENT_READ, "accept")
        if ready_fd is not None:
            os.write(ready_fd, b"r")
            os.close(ready_fd)

        while self.running:
            for key, _ in self.selector.select():
                if key.data == "wake":
                    while True:
                        try:
                            wake_r.recv(512)
                        except BlockingIOError:
                            break
                    self._reap()
                elif key.data == "accept":
                    self._accept(listener)
                else:
                    self._serve_client()
        path.unlink(missing_ok=True)

    def _accept(self, listener: socket.socket) -> None:
        """A new agent replaces the previous one."""
        conn, _ = listener.accept()
        self._drop_client()
        self.client = conn
        self.selector.register(conn, selectors.EVENT_READ, "client")

    def _drop_client(self) -> None:
        if self.client is not None:
            self.selector.unregister(self.client)
            self.client.close()
            self.client = None

    def _serve_client(self) -> None:
        assert self.client is not None
        try:
            message, fds = wire.recv(self.client)
        except OSError:
            message, fds = None, []
        for fd in fds:
            os.close(fd)
        if message is None:
            self._drop_client()
            return
        try:
            self._handle(message)
        except OSError:
            # The agent went away mid-reply; the next one will ask again.
            self._drop_client()

    def _handle(self, message: dict[str, Any]) -> None:
        assert self.client is not None
        seq, op = message.get("seq"), message.get("op")
        if op == "start":
            self._start(seq, LaunchPlan.from_json(message["plan"]))
        elif op == "list":
            for record in self.records.values():
                reply = {"op": "dyno", "seq": seq, **record.to_json()}
                wire.send(self.client, reply, record.fds)
            wire.send(self.client, {"op": "done", "seq": seq})
        elif op == "forget":
            forgotten = self.records.pop(message["id"], None)
            for fd in forgotten.fds if forgotten else []:
                os.close(fd)
            wire.send(self.client, {"op": "ok", "seq": seq})
        elif op == "shutdown":
            self._shutdown()
            wire.send(self.client, {"op": "ok", "seq": seq})
        else:
            wire.send(self.client, {"op": "error", "seq": seq, "error": f"{op}?"})

    def _start(self, seq: object, plan: LaunchPlan) -> None:
        """Launch a dyno and hand its output ends (or attach end) to the agent."""
        assert self.client is not None
        # Pipes for log output; a PTY or a socketpair for attached one-offs.
        keep: list[int] = []
        if plan.tty:
            # The dyno makes its terminal and sends the master back (below).
            ours, theirs = socket.socketpair()
            give, child = ours.detach(), theirs.detach()
            stdio = Stdio(child, child, child, tty=True)
        elif plan.stdin:
            ours, theirs = socket.socketpair()
            give, child = ours.detach(), theirs.detach()
            stdio = Stdio(child, child, child)
        else:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            keep = [out_r, err_r]
            # Room for the lines a dyno logs while no daemon reads them.
            for fd in (out_w, err_w):
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, LOG_PIPE_BYTES)
            stdio = Stdio(None, out_w, err_w)
        try:
            launched = launch(plan, stdio, str(self.scratch))
        except RuntimeFailure as exc:
            for fd in keep if keep else [give]:
                os.close(fd)
            wire.send(self.client, {"op": "error", "seq": seq, "error": str(exc)})
            return
        finally:
            for fd in {stdio.stdout, stdio.stderr}:
                os.close(fd)
        if plan.tty:
            # Sent before the exec that launch() waited for, so it is here.
            give = _receive_master(give)

        record = Record(
            plan.dyno_id,
            plan.app,
            plan.name,
            launched.pid,
            plan.address.split("/")[0] if plan.address else None,
            plan.veth,
            time.time(),
            keep,
        )
        self.records[record.id] = record
        reply = {"op": "started", "seq": seq, "marks": launched.marks}
        reply.update(record.to_json())
        if keep:
            wire.send(self.client, reply, keep)
        else:
            # Attached: the caller owns the only copy, so hangups reach the dyno.
            wire.send(self.client, reply, [give])
            os.close(give)

    def _reap(self) -> None:
        """Collect every exited child; report the dynos' PID 1s."""
        by_pid = {r.pid: r for r in self.records.values() if r.status is None}
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            record = by_pid.get(pid)
            if record is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            record.status = 128 - code if code < 0 else code
            if self.client is not None:
                event = {"op": "exit", "id": record.id, "status": record.status}
                try:
                    wire.send(self.client, event)
                except OSError:
                    self._drop_client()

    def _shutdown(self) -> None:
        for record in self.records.values():
            if record.status is None:
                try:
                    os.kill(record.pid, signal.SIGKILL)
                    os.waitpid(record.pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
            for fd in record.fds:
                os.close(fd)
        self.records.clear()
        self.running = False


def _receive_master(channel: int) -> int:
    """The PTY master a launched dyno sent down ``channel`` (then closed)."""
    with socket.socket(fileno=channel) as sock:
        _, fds, _, _ = socket.recv_fds(sock, 1, 1)
    return fds[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="dynod-spawner")
    # The instance is on the command line so the process can be told apart.
    parser.add_argument("--instance", required=True)
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--ready-fd", type=int)
    args = parser.parse_args(argv)
    Spawner(args.run_dir).serve(args.ready_fd)
    sys.exit(0)


if __name__ == "__main__":
    main()
