"""The facts one router log line carries for metrics.

Router lines are ``key=value`` pairs in Heroku's order (see
:mod:`dynod.router.logline`); only ``status``, ``service`` and ``code`` matter
here.  Values with spaces are quoted and come earlier (``path``, ``fwd``,
``desc``), so the fields are found from the end of the line, which a client
cannot forge: quotes inside quoted values are escaped by the router.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_STATUS_RE = re.compile(r" status=(\d{3}) ")
_SERVICE_RE = re.compile(r" service=(\d*)(?:ms)? ")
_CODE_RE = re.compile(r"^at=\w+ code=(H\d\d) ")


@dataclass(frozen=True, slots=True)
class RouterSample:
    status: int
    # None when the request never reached a dyno (H codes made by the router).
    service_ms: int | None
    code: str | None


def parse(line: str) -> RouterSample | None:
    """The sample in ``line``, or None for a line that is not a request line."""
    status = _last(_STATUS_RE, line)
    if status is None:
        return None
    service = _last(_SERVICE_RE, line)
    code = _CODE_RE.match(line)
    return RouterSample(
        int(status),
        int(service) if service else None,
        code.group(1) if code else None,
    )


def _last(pattern: re.Pattern[str], line: str) -> str | None:
    found = None
    for found_match in pattern.finditer(line):
        found = found_match.group(1)
    return found
