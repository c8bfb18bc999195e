"""Is anything in a dyno listening on a TCP port?

``/proc/<pid>/net/tcp`` and ``tcp6`` list the sockets of the network namespace
of ``<pid>``, so reading them for the dyno's PID 1 needs no ``setns``.  A line's
second field is ``HEXADDR:HEXPORT`` and its fourth the state, ``0A`` = LISTEN.
"""

from __future__ import annotations

from pathlib import Path

_LISTEN = "0A"


def listening(pid: int, port: int, proc: Path = Path("/proc")) -> bool:
    """True when the netns of ``pid`` has a TCP socket listening on ``port``."""
    wanted = f":{port:04X}"
    for name in ("tcp", "tcp6"):
        try:
            text = (proc / str(pid) / "net" / name).read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == _LISTEN and fields[1].endswith(wanted):
                return True
    return False
