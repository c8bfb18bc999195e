"""Is anything in a dyno listening on a TCP port, and how many are connected?

``/proc/<pid>/net/tcp`` and ``tcp6`` list the sockets of the network namespace
of ``<pid>``, so reading them for the dyno's PID 1 needs no ``setns``.  A line's
second field is the local ``HEXADDR:HEXPORT`` and its fourth the state
(include/net/tcp_states.h): ``0A`` = LISTEN, ``01`` = ESTABLISHED.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

_LISTEN = "0A"
_ESTABLISHED = "01"


def listening(pid: int, port: int, proc: Path = Path("/proc")) -> bool:
    """True when the netns of ``pid`` has a TCP socket listening on ``port``."""
    return any(_sockets(pid, port, _LISTEN, proc))


def connected(pid: int, port: int, proc: Path = Path("/proc")) -> int:
    """How many TCP connections to local ``port`` are established in the netns
    of ``pid``: for a web dyno, the connections its requests travel on."""
    return sum(1 for _ in _sockets(pid, port, _ESTABLISHED, proc))


def _sockets(pid: int, port: int, state: str, proc: Path) -> Iterator[str]:
    wanted = f":{port:04X}"
    for name in ("tcp", "tcp6"):
        try:
            text = (proc / str(pid) / "net" / name).read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == state and fields[1].endswith(wanted):
                yield line
