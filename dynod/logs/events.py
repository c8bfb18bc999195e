"""A log event and its one-line text form.

The text form is the display form Heroku users know, with dynod as the platform
source: ``2026-12-03T18:12:23.123456+00:00 app[web.1]: hello``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

# Lines over this many bytes are split into several events (as Logplex does).
MAX_LINE_BYTES = 10000

_LINE_RE = re.compile(r"^(\S+) (app|dynod)\[([^\]]*)\]: ")


@dataclass(frozen=True)
class LogEvent:
    timestamp: float
    source: str  # "app" or "dynod"
    dyno: str  # "web.1", "router", "api", "build", ...
    message: str

    def format(self) -> str:
        return (
            f"{format_stamp(self.timestamp)} {self.source}[{self.dyno}]: {self.message}"
        )


def format_stamp(when: float, micros: bool = True) -> str:
    """RFC 3339 in UTC: ``2026-12-03T18:12:23.123456+00:00`` (RFC 5424 §6.2.3)."""
    seconds = int(when)
    t = time.gmtime(seconds)
    base = (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    )
    if not micros:
        return base + "+00:00"
    fraction = min(round((when - seconds) * 1_000_000), 999_999)
    return f"{base}.{fraction:06d}+00:00"


def split_line(data: bytes) -> list[str]:
    """Decode one output line, split into pieces of at most MAX_LINE_BYTES."""
    pieces = [data[i : i + MAX_LINE_BYTES] for i in range(0, len(data), MAX_LINE_BYTES)]
    return [p.decode("utf-8", "replace") for p in pieces] or [""]


def matches(line: str, source: str | None, dyno: str | None, ptype: str | None) -> bool:
    """Does a formatted line pass the ``logs`` filters?

    ``dyno`` matches a dyno name exactly or, without a dot, a process type (as
    Heroku's ``--dyno web`` does); ``ptype`` matches ``TYPE.N`` names.
    """
    if source is None and dyno is None and ptype is None:
        return True
    m = _LINE_RE.match(line)
    if m is None:
        return False
    line_source, line_dyno = m.group(2), m.group(3)
    if source is not None and line_source != source:
        return False
    if dyno is not None:
        if "." in dyno:
            if line_dyno != dyno:
                return False
        elif line_dyno.split(".", 1)[0] != dyno:
            return False
    return ptype is None or line_dyno.split(".", 1)[0] == ptype
