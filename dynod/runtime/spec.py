"""What a dyno is, as the manager hands it to an agent.

A :class:`DynoSpec` is complete: the agent needs nothing else (no database, no
config lookups) to start the dyno, which is what lets the same spec travel to a
remote agent over SSH later.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

MB = 1024 * 1024


@dataclass(frozen=True)
class Size:
    """A dyno size: the limits one dyno of this size gets."""

    name: str
    memory_bytes: int
    pids: int
    # Relative CPU weight in Heroku "shares" (1 share = cpu.shares 1024 on v1,
    # cpu.weight 100 on v2).
    cpu_shares: int
    # A hard CPU ceiling in CPUs (CFS quota), or None for shares only.
    cpu_quota: float | None = None


SIZES: dict[str, Size] = {
    s.name: s
    for s in (
        Size("eco", 512 * MB, 256, 1),
        Size("basic", 512 * MB, 256, 1),
        Size("standard-1x", 512 * MB, 256, 1),
        Size("standard-2x", 1024 * MB, 512, 2),
        Size("performance-m", 2560 * MB, 16384, 12, cpu_quota=2.0),
        Size("performance-l", 14336 * MB, 32768, 50, cpu_quota=8.0),
    )
}
DEFAULT_SIZE = "standard-1x"


class DynoKind(enum.Enum):
    FORMATION = "formation"  # web.1, worker.2: restarted when they exit
    ONE_OFF = "one-off"  # run.1234: never restarted
    BUILD = "build"  # runs buildpacks against a writable /app bind


@dataclass(frozen=True)
class BindMount:
    """A host directory bind-mounted into the dyno (builds use these)."""

    source: Path
    target: str
    readonly: bool = True


@dataclass(frozen=True)
class DynoSpec:
    """Everything an agent needs to start one dyno.

    ``dyno_id`` is unique per run (a restart gets a new one); ``name`` is the
    user-facing ``web.1``.  ``argv`` is run by bash after ``.profile.d/*.sh`` and
    ``/app/.profile`` are sourced (see :mod:`dynod.runtime.launcher`).
    """

    dyno_id: str
    app: str
    name: str
    kind: DynoKind
    argv: tuple[str, ...]
    env: dict[str, str] = field(hash=False)
    size: Size
    uid: int
    gid: int
    stack_dir: Path
    # Directory holding the unpacked slug as ``app/``; the overlay's upper lower
    # layer.  None for builds, whose /app is a bind mount (see ``binds``).
    slug_dir: Path | None = None
    binds: tuple[BindMount, ...] = ()
    # Web dynos listen here; None for every other kind.
    port: int | None = None
    # Size of the tmpfs that holds every write the dyno makes (/app, /tmp, ...).
    ephemeral_bytes: int = 1024 * MB
    # One-off dynos attached to a terminal get a PTY as stdin/stdout/stderr.
    tty: bool = False
    # Attached one-offs read stdin from the client; others get /dev/null.
    stdin: bool = False
    release_version: int = 0
    # The cgroup's hard memory limit; None means the size's quota.  The manager
    # sets twice the quota, so R14 is logged between quota and limit.
    memory_limit_bytes: int | None = None
    # The seccomp filter (:mod:`dynod.runtime.seccomp`); off only to measure it.
    seccomp: bool = True
