"""The agent interface: the only way the manager touches dynos.

The local agent (:class:`dynod.runtime.local.LocalAgent`) runs in dynod's own
process and drives this host's kernel; a remote agent will speak the same
interface over SSH to ``dynod agent`` on another host.  Nothing above this line
knows which one it has.

Agents report what happens to dynos through an :class:`AgentListener` given at
construction; calls on the listener are made from the event loop and must not
block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dynod.runtime.spec import DynoSpec


@dataclass(frozen=True)
class DynoHandle:
    """A dyno that an agent has started (or adopted) and is watching."""

    dyno_id: str
    app: str
    name: str
    # Host PID of the dyno's PID 1 (tini).
    pid: int
    # The dyno's address on the dyno bridge, or None when it has no network.
    ip: str | None
    # Wall-clock time (time.time()) the dyno's process started.
    started_at: float
    # For attached one-offs: a file descriptor owned by the caller that carries
    # the dyno's terminal (a PTY master when the spec asked for a tty, else one
    # end of a socketpair with stdin, stdout and stderr behind it).
    attach_fd: int | None = None


@dataclass(frozen=True)
class DynoExit:
    """A dyno's PID 1 has exited and everything it held has been released."""

    dyno_id: str
    # As a shell reports it: the exit code, or 128 + signal number.  None when
    # the status is unknowable (the dyno was adopted from an earlier daemon).
    status: int | None
    # True when the kernel's OOM killer acted inside the dyno's cgroup.
    oom_killed: bool


@dataclass(frozen=True)
class DynoStats:
    memory_bytes: int
    memory_limit_bytes: int
    pids: int
    cpu_seconds: float
    # Times the kernel's OOM killer acted inside the dyno's cgroup so far.
    oom_kills: int = 0


class AgentListener(Protocol):
    def on_output(self, dyno_id: str, stream: str, line: bytes) -> None:
        """One line (no trailing newline, at most 10000 bytes) from a dyno.

        ``stream`` is ``"stdout"`` or ``"stderr"``.  Attached one-offs do not
        report output here: it goes to their ``attach_fd``.
        """

    def on_exit(self, event: DynoExit) -> None:
        """A dyno has exited; it is already torn down."""


class Agent(Protocol):
    async def start(self, spec: DynoSpec) -> DynoHandle:
        """Start a dyno and return once its command is running.

        Raises :class:`dynod.errors.RuntimeFailure` (and leaves nothing behind)
        when any step fails.
        """

    async def stop(self, dyno_id: str, timeout: float) -> bool:
        """SIGTERM every process of the dyno, SIGKILL after ``timeout`` seconds.

        Returns True when SIGKILL was needed.  Returns once the dyno is gone; the
        listener's ``on_exit`` has been called by then.  Unknown ids are a no-op.
        """

    async def wait(self, dyno_id: str) -> DynoExit:
        """Return once the dyno has exited (at once if it already has).

        Raises :class:`dynod.errors.NotFound` for an id the agent never had.
        """

    async def kill(self, dyno_id: str) -> None:
        """SIGKILL every process of the dyno at once."""

    async def list(self) -> list[DynoHandle]:
        """Every dyno this agent is watching, adopted ones included."""

    async def is_listening(self, dyno_id: str, port: int) -> bool:
        """True when some process in the dyno listens on TCP ``port``."""

    async def connections(self, dyno_id: str, port: int) -> int:
        """Established TCP connections to the dyno's ``port``; 0 once it is gone."""

    async def stats(self, dyno_id: str) -> DynoStats:
        """Resource use from the dyno's cgroups."""

    async def close(self) -> None:
        """Stop watching; running dynos are left running for the next daemon."""

    async def destroy(self) -> None:
        """Kill every dyno and remove every kernel object this agent made."""
