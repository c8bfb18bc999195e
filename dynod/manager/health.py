"""Health checks of booting web dynos, sent through the router.

When an app has a ``health_path``, a new web dyno that listens on ``$PORT``
is not yet served: the manager lists it in the route table as a preboot dyno
and asks the router for the path with the app's own Host and a
``Dynod-Preboot-Check`` header (the table's token and the dyno's name), which
only that dyno can answer.  The request takes the path real requests take, so
a dyno that passes is reachable as it will be used: through the firewall, the
router and the app's host routing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

# How long one check may take, connect to last header byte.
CHECK_TIMEOUT = 5.0


@dataclass(frozen=True)
class Check:
    """Where the router listens, and what to ask it."""

    router_addr: str
    router_port: int
    host: str
    path: str
    token: str
    dyno: str


async def status_of(check: Check, timeout: float = CHECK_TIMEOUT) -> int | None:
    """The HTTP status the dyno answered through the router; None if none came."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                check.router_addr, check.router_port
            )
            try:
                writer.write(
                    f"GET {check.path} HTTP/1.1\r\nHost: {check.host}\r\n"
                    f"Dynod-Preboot-Check: {check.token} {check.dyno}\r\n"
                    "User-Agent: dynod-health-check\r\nConnection: close\r\n\r\n"
                    .encode("latin-1")
                )  # fmt: skip
                head = await reader.readuntil(b"\r\n\r\n")
            finally:
                writer.close()
    except (
        OSError,
        TimeoutError,
        asyncio.IncompleteReadError,
        asyncio.LimitOverrunError,
    ):
        return None
    return parse_status(head)


def parse_status(head: bytes) -> int | None:
    """The status code of an HTTP/1.x response head, or None if it is not one."""
    parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        return None
    return int(parts[1])


def passed(status: int | None) -> bool:
    """A check passes on 2xx and 3xx, as load balancers' checks do."""
    return status is not None and 200 <= status < 400
