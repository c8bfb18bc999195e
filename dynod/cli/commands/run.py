"""``run`` and ``run:detached``: one-off dynos."""

from __future__ import annotations

import os
import shlex
import sys
from typing import Any

import click

from dynod.cli.base import Session, command
from dynod.cli.parsing import parse_assignments

# Options stop at the first word of the command, so `run ls -la` works.
_RUN_SETTINGS = {"allow_interspersed_args": False}


def command_line(words: tuple[str, ...]) -> str:
    """The dyno's command: one word as written (``"echo $HOME"``), else quoted words."""
    return words[0] if len(words) == 1 else shlex.join(words)


def dyno_body(
    cmd: str,
    env: tuple[str, ...],
    size: str | None,
    *,
    attach: bool,
    tty: bool,
    ttl: int | None = None,
) -> dict[str, Any]:
    """The ``POST /dynos`` body; a terminal session sends TERM and its size."""
    variables = parse_assignments(env, hint="'-e'")
    if tty:
        from dynod.cli.attach import terminal_size

        cols, rows = terminal_size()
        variables = {
            "TERM": os.environ.get("TERM") or "xterm-256color",
            "COLUMNS": str(cols),
            "LINES": str(rows),
            **variables,
        }
    body: dict[str, Any] = {"command": cmd, "attach": attach, "env": variables}
    if attach:
        body["tty"] = tty
    if size:
        body["size"] = size.lower()
    if ttl is not None:
        body["time_to_live"] = ttl
    return body


# The daemon checks the range (1 s to 24 h) and says what is allowed.
_TTL = click.option(
    "--ttl",
    type=int,
    metavar="SECONDS",
    help="End the dyno after this many seconds (default and maximum 86400).",
)


@command("run", context_settings=_RUN_SETTINGS)
@click.option(
    "-e",
    "--env",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a variable (repeatable).",
)
@click.option("-s", "--size", metavar="SIZE", help="Dyno size (default standard-1x).")
@click.option("--no-tty", is_flag=True, help="Do not allocate a terminal.")
@_TTL
@click.argument("words", metavar="[--] COMMAND...", nargs=-1, required=True)
def run(
    s: Session,
    env: tuple[str, ...],
    size: str | None,
    no_tty: bool,
    ttl: int | None,
    words: tuple[str, ...],
) -> None:
    """Run COMMAND in a one-off dyno attached to this terminal.

    With a terminal on both ends the dyno gets one (a PTY) and keys go to it
    raw, Ctrl-C included; otherwise stdin and stdout are plain streams.  The
    exit status is the command's.

    \b
    Examples:
      $ dynoctl run -a hello -- bash
      $ dynoctl run -a hello -e DEBUG=1 --size standard-2x -- python manage.py migrate
      $ dynoctl run -a hello --no-tty -- cat < data.csv
    """
    cmd = command_line(words)
    tty = not no_tty and sys.stdin.isatty() and sys.stdout.isatty()
    body = dyno_body(cmd, env, size, attach=True, tty=tty, ttl=ttl)
    with s.out.action(f"Running `{cmd}` on {s.mark}") as step:
        dyno = s.client.request("POST", s.path("dynos"), body)
        step.outcome = f"{dyno.get('state', 'starting')}, {dyno['name']}"
    # The WebSocket stack loads only for commands that attach.
    from dynod.cli.attach import run_attached

    status = run_attached(s.client, dyno["attach_url"], tty_mode=tty)
    click.get_current_context().exit(status)


@command("run:detached", context_settings=_RUN_SETTINGS)
@click.option(
    "-e",
    "--env",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a variable (repeatable).",
)
@click.option("-s", "--size", metavar="SIZE", help="Dyno size (default standard-1x).")
@_TTL
@click.argument("words", metavar="[--] COMMAND...", nargs=-1, required=True)
def run_detached(
    s: Session,
    env: tuple[str, ...],
    size: str | None,
    ttl: int | None,
    words: tuple[str, ...],
) -> None:
    """Run COMMAND in a one-off dyno whose output goes to the app's logs.

    \b
    Example:
      $ dynoctl run:detached -a hello -- python cleanup.py
      Running `python cleanup.py` on ⬢ hello... done, run.4821 (standard-1x)
      Run `dynoctl logs -a hello -d run.4821` to see its output.
    """
    cmd = command_line(words)
    body = dyno_body(cmd, env, size, attach=False, tty=False, ttl=ttl)
    with s.out.action(f"Running `{cmd}` on {s.mark}") as step:
        dyno = s.client.request("POST", s.path("dynos"), body)
        step.suffix = f"{dyno['name']} ({dyno.get('size', '')})"
    if s.out.as_json:
        s.out.json(dyno)
        return
    s.out.info(f"Run `dynoctl logs -a {s.app} -d {dyno['name']}` to see its output.")


COMMANDS = [run, run_detached]
