"""A log event and its one-line text form.

The text form is the display form Heroku users know, with dynod as the platform
source: ``2026-12-03T18:12:23.123456+00:00 app[web.1]: hello``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from dynod.runtime.output import MAX_LINE, cut

# Lines over this many bytes are split into several events (as Logplex does).
MAX_LINE_BYTES = MAX_LINE

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
    return [p.decode("utf-8", "replace") for p in cut(data, MAX_LINE_BYTES)]


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


def line_picker(
    source: str | None, dyno: str | None, ptype: str | None
) -> Callable[[bytes, int], list[str]]:
    """A function ``pick(block, need)``: the last ``need`` lines of ``block`` that
    pass the ``logs`` filters, oldest first.

    ``block`` is whole history lines, each ending in a newline.  The answers are
    :func:`matches`'s; candidates are found first with ``bytes.find`` on the
    ``SOURCE[DYNO`` tag, so a filter that matches few lines costs about one
    memory scan of the block instead of a regex per line.
    """
    if source is None and dyno is None and ptype is None:
        return _pick_all
    exact = dyno if dyno is not None and "." in dyno else None
    kind = ptype if ptype is not None else dyno if exact is None else None
    if exact is None and dyno is not None and dyno != kind:
        # -d web -p worker: no dyno is of both types.
        return _pick_none
    if exact is not None and ptype is not None and exact.split(".", 1)[0] != ptype:
        return _pick_none
    sources = (source,) if source is not None else ("app", "dynod")
    if exact is not None:
        tags = [f" {s}[{exact}]: " for s in sources]
    elif kind is not None:
        tags = [f" {s}[{kind}{end}" for s in sources for end in (".", "]: ")]
    else:
        tags = [f" {s}[" for s in sources]
    needles = [t.encode() for t in tags]

    def pick(block: bytes, need: int) -> list[str]:
        spans: list[tuple[int, int]] = []
        for needle in needles:
            at = block.find(needle)
            while at >= 0:
                start = block.rfind(b"\n", 0, at) + 1
                end = block.find(b"\n", at)
                end = len(block) if end < 0 else end
                # The tag counts only right after the timestamp, not in a message.
                if start < at and block.find(b" ", start, at) < 0:
                    spans.append((start, end))
                at = block.find(needle, end)
        if len(needles) > 1:
            spans.sort()
        found: list[str] = []
        for start, end in reversed(spans):
            line = block[start:end].decode("utf-8", "replace")
            if matches(line, source, dyno, ptype):
                found.append(line)
                if len(found) >= need:
                    break
        return found[::-1]

    return pick


def _pick_all(block: bytes, need: int) -> list[str]:
    lines = [x for x in block.split(b"\n") if x]
    return [x.decode("utf-8", "replace") for x in lines[-need:]] if need > 0 else []


def _pick_none(block: bytes, need: int) -> list[str]:
    return []
