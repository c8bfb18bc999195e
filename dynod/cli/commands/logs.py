"""``logs``: an app's recent log lines, or all new ones with ``--tail``."""

from __future__ import annotations

import json
import re
import sys
import zlib
from collections.abc import Callable

import click

from dynod.cli.base import Session, command

# ``2026-12-03T18:12:23.123456+00:00 app[web.1]: hello``
_LINE_RE = re.compile(r"^(\S+) (\w+)\[([^\]]*)\]: ?(.*)$", re.DOTALL)
_DYNO_COLOURS = ("cyan", "green", "yellow", "blue", "bright_cyan", "bright_green")


def colourise(line: str) -> str:
    """A log line with its ``source[dyno]`` coloured: one colour per app dyno."""
    m = _LINE_RE.match(line)
    if not m:
        return line
    stamp, source, dyno, message = m.groups()
    if source == "app":
        # crc32 is stable across runs, unlike hash(), so web.1 keeps its colour.
        dtype = dyno.partition(".")[0]
        colour = _DYNO_COLOURS[zlib.crc32(dtype.encode()) % len(_DYNO_COLOURS)]
    else:
        colour = "magenta"
    tag = click.style(f"{source}[{dyno}]:", fg=colour)
    return f"{click.style(stamp, dim=True)} {tag} {message}"


def _plain(line: str) -> str:
    return line


def as_record(line: str) -> str:
    """A log line as one JSON object (for ``--json``, one object per line)."""
    m = _LINE_RE.match(line)
    if not m:
        return json.dumps({"line": line}, ensure_ascii=False)
    stamp, source, dyno, message = m.groups()
    record = {"timestamp": stamp, "source": source, "dyno": dyno, "message": message}
    return json.dumps(record, ensure_ascii=False)


@command("logs")
@click.option(
    "-n", "--num", type=click.IntRange(1, 1500), default=100, show_default=True,
    help="How many recent lines to show.",
)  # fmt: skip
@click.option(
    "-t", "--tail", is_flag=True, help="Keep printing new lines (Ctrl-C ends)."
)
@click.option(
    "-s", "--source", type=click.Choice(["app", "dynod"]),
    help="Only lines from the app's dynos, or only dynod's own.",
)  # fmt: skip
@click.option(
    "-d", "--dyno", "--dyno-name", metavar="DYNO", help="Only this dyno (web.1)."
)
@click.option(
    "-p", "--process-type", "--ps", "ptype", metavar="TYPE",
    help="Only dynos of this process type (web).",
)  # fmt: skip
def logs(
    s: Session,
    num: int,
    tail: bool,
    source: str | None,
    dyno: str | None,
    ptype: str | None,
) -> None:
    """Show an app's recent log lines; with -t, follow new ones.

    Lines read TIMESTAMP SOURCE[DYNO]: MESSAGE.  Sources are app (what dynos
    print) and dynod (state changes, router requests, API actions).  With
    --json each line becomes a JSON object of its fields.  Filters search the
    newest 256 MiB of the app's history.  A tail that falls behind skips lines
    and says how many (Error L11).

    \b
    Examples:
      $ dynoctl logs -a hello
      $ dynoctl logs -t -p web -a hello
      $ dynoctl logs -s dynod -d router -n 500 -a hello
    """
    params = {"lines": num, "tail": tail, "source": source, "dyno": dyno, "type": ptype}
    stdout = sys.stdout
    # Colour only on a terminal (and never with NO_COLOR); plain lines skip
    # click's per-line work, which costs more than fetching them.
    coloured = s.out.color is not False and stdout.isatty()
    render: Callable[[str], str] = (
        as_record if s.out.as_json else colourise if coloured else _plain
    )
    try:
        for line in s.client.stream_lines(s.path("log-stream"), params=params):
            stdout.write(render(line) + "\n")
            if tail:
                stdout.flush()
    except KeyboardInterrupt:
        # Ctrl-C is how a tail ends; it is not a failure.
        return
    finally:
        stdout.flush()


COMMANDS = [logs]
