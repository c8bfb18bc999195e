"""How dynoctl prints: tables, headings, times, sizes, progress and JSON.

Results go to stdout; progress and errors to stderr, so a pipe receives only
results.  Colour is applied with :func:`click.style` and stripped by
:func:`click.echo` whenever the stream is not a terminal (or ``$NO_COLOR`` is
set), so "colours only on a TTY" holds without any command checking.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click

# Heroku marks an app with a hexagon in progress lines; users know the shape.
APP_MARK = "⬢"


def render_table(
    headers: Sequence[str] | None, rows: Sequence[Sequence[str]]
) -> list[str]:
    """Lines of a table with left-aligned columns two spaces apart.

    With headers, the second line underlines each column with ``─``.  Widths
    ignore colour codes, and trailing blanks are trimmed from every line.
    """
    table = [list(r) for r in rows]
    if headers is not None:
        table.insert(0, list(headers))
    if not table:
        return []
    ncols = max(len(r) for r in table)
    widths = [0] * ncols
    for row in table:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(click.unstyle(cell)))

    def line(cells: Sequence[str]) -> str:
        parts = [
            c + " " * (widths[i] - len(click.unstyle(c))) for i, c in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    lines = [line(r) for r in table]
    if headers is not None:
        lines.insert(1, line(["─" * w for w in widths]))
    return lines


def render_pairs(pairs: Mapping[str, str] | Sequence[tuple[str, str]]) -> list[str]:
    """``Key: value`` lines with the values aligned, as Heroku prints config.

    Later lines of a multi-line value are indented to the value column.
    """
    items = list(pairs.items()) if isinstance(pairs, Mapping) else list(pairs)
    if not items:
        return []
    width = max(len(k) for k, _ in items) + 1
    lines: list[str] = []
    for key, value in items:
        first, *rest = str(value).split("\n")
        lines.append(f"{key + ':':<{width}} {first}".rstrip())
        lines.extend(" " * (width + 1) + more for more in rest)
    return lines


def parse_time(value: str) -> datetime:
    """An RFC 3339 timestamp from the API, as an aware datetime."""
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def ago(seconds: float) -> str:
    """A rough age as Heroku prints it: ``~ 3s``, ``~ 3m``, ``~ 3h``, ``~ 3d``."""
    s = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"~ {s // size}{unit} ago"
    return f"~ {s}s ago"


def format_when(value: str | None, now: datetime | None = None) -> str:
    """``2026/12/03 18:12:23 +0000 (~ 3m ago)`` for an API timestamp; "" for None."""
    if not value:
        return ""
    when = parse_time(value).astimezone(UTC)
    now = now or datetime.now(UTC)
    stamp = when.strftime("%Y/%m/%d %H:%M:%S +0000")
    return f"{stamp} ({ago((now - when).total_seconds())})"


def format_bytes(value: int | None) -> str:
    """A memory figure in binary units (``112 MB``); "" when unknown."""
    if value is None:
        return ""
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if value >= scale:
            digits = 1 if unit == "GB" else 0
            return f"{value / scale:.{digits}f} {unit}"
    return f"{value} B"


def plural(count: int, word: str) -> str:
    """``1 dyno``, ``2 dynos``."""
    return f"{count} {word}" + ("" if count == 1 else "s")


def join_words(words: Sequence[str]) -> str:
    """``A``, ``A and B``, ``A, B and C``."""
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


class Output:
    """The printing side of one command invocation."""

    def __init__(self, *, as_json: bool = False, quiet: bool = False) -> None:
        self.as_json = as_json
        self.quiet = quiet
        # An explicit False strips colour even on a terminal; None lets click
        # decide per stream.
        self.color: bool | None = False if os.environ.get("NO_COLOR") else None

    def echo(self, text: str = "", *, nl: bool = True) -> None:
        """Print a result line on stdout."""
        click.echo(text, nl=nl, color=self.color)

    def lines(self, lines: Sequence[str]) -> None:
        """Print result lines on stdout."""
        for line in lines:
            self.echo(line)

    def heading(self, text: str) -> None:
        """A Heroku-style ``=== heading`` line."""
        self.echo(click.style(f"=== {text}", bold=True))

    def json(self, value: Any) -> None:
        """Print an API value as indented JSON on stdout."""
        click.echo(json.dumps(value, indent=2, ensure_ascii=False))

    def info(self, text: str, *, nl: bool = True) -> None:
        """Progress or a hint on stderr; silenced by ``--quiet``."""
        if not self.quiet:
            click.echo(text, nl=nl, err=True, color=self.color)

    def warn(self, text: str) -> None:
        """A warning on stderr that ``--quiet`` does not silence."""
        click.echo(
            click.style(" ▸    ", fg="yellow") + text, err=True, color=self.color
        )

    @contextmanager
    def action(self, text: str) -> Iterator[Action]:
        """``Text... done`` on stderr around a step; ``!`` instead if it fails."""
        step = Action()
        self.info(f"{text}...", nl=False)
        try:
            yield step
        except BaseException:
            self.info(" " + click.style("!", fg="red"))
            raise
        suffix = f", {step.suffix}" if step.suffix else ""
        self.info(" " + (step.outcome or "done" + suffix))


class Action:
    """A running :meth:`Output.action`.

    Set ``suffix`` to print ``done, SUFFIX``, or ``outcome`` to print it
    instead of ``done``.
    """

    def __init__(self) -> None:
        self.suffix = ""
        self.outcome = ""
