"""``ps``, ``ps:scale``, ``ps:type``, ``ps:restart`` and ``ps:stop``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click

from dynod.cli.base import Session, command
from dynod.cli.output import (
    format_bytes,
    format_when,
    parse_time,
    render_table,
)
from dynod.cli.parsing import needs_formation, parse_scale, parse_types, scale_updates

_STATE_COLOURS = {"up": "green", "starting": "yellow", "crashed": "red", "down": "red"}


def dyno_order(dyno: dict[str, Any]) -> tuple[int, str, int]:
    """Sort key: web first, then types by name, one-offs last; numbers numerically."""
    dtype = str(dyno.get("type", ""))
    _, _, number = str(dyno.get("name", "")).rpartition(".")
    rank = 0 if dtype == "web" else 2 if dtype == "run" else 1
    return (rank, dtype, int(number) if number.isdigit() else 0)


def format_due(value: str, now: datetime | None = None) -> str:
    """``in 8s`` or ``at 18:32:10 +0000`` for a crashed dyno's next attempt."""
    when = parse_time(value).astimezone(UTC)
    left = (when - (now or datetime.now(UTC))).total_seconds()
    if left <= 0:
        return "now"
    if left < 3600:
        minutes, seconds = divmod(int(left + 0.999), 60)
        return f"in {minutes}m{seconds:02d}s" if minutes else f"in {seconds}s"
    return when.strftime("at %H:%M:%S +0000")


def render_ps(dynos: Sequence[dict[str, Any]]) -> list[str]:
    """``ps`` lines: a heading per type, size and command, then one line per dyno."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for d in sorted(dynos, key=dyno_order):
        key = (
            str(d.get("type", "")),
            str(d.get("size", "")),
            str(d.get("command", "")),
        )
        groups.setdefault(key, []).append(d)
    lines: list[str] = []
    for (dtype, size, cmd), members in groups.items():
        if lines:
            lines.append("")
        one_off = dtype == "run"
        if one_off:
            heading = f"=== run: one-off processes ({len(members)})"
        else:
            heading = f"=== {dtype} ({size}): {cmd} ({len(members)})"
        lines.append(click.style(heading, bold=True))
        rows = []
        for d in members:
            state = str(d.get("state", ""))
            name = f"{d['name']} ({size}):" if one_off else f"{d['name']}:"
            since = format_when(d.get("updated_at"))
            if state == "crashed" and d.get("restart_at"):
                since += f", next attempt {format_due(d['restart_at'])}"
            # Heroku's own shape leads the line; extra columns align after it.
            row = [
                f"{name} {click.style(state, fg=_STATE_COLOURS.get(state))} {since}",
                f"v{(d.get('release') or {}).get('version', '?')}",
                format_bytes(d.get("memory_bytes")),
                str(d.get("host") or ""),
            ]
            rows.append([*row, cmd] if one_off else row)
        lines.extend(render_table(None, rows))
    return lines


def describe_formation(formation: Sequence[dict[str, Any]]) -> str:
    """``web=3:standard-1x worker=1:standard-2x``, as Heroku prints a formation."""
    return " ".join(f"{f['type']}={f['quantity']}:{f['size']}" for f in formation)


@command("ps")
def ps(s: Session) -> None:
    """List an app's dynos, grouped by process type.

    Each line shows the state and since when, the release, memory use and
    the host the dyno runs on.

    \b
    Example:
      $ dynoctl ps -a hello
      === web (standard-1x): python3 app.py (2)
      web.1: up 2026/12/03 18:12:23 +0000 (~ 3m ago)  v3  42 MB  node-a
      web.2: up 2026/12/03 18:12:24 +0000 (~ 3m ago)  v3  40 MB  node-a
    """
    dynos: list[dict[str, Any]] = s.client.request("GET", s.path("dynos"))
    if s.out.as_json:
        s.out.json(dynos)
    elif not dynos:
        s.out.info(f"No dynos on {s.mark}; scale with `dynoctl ps:scale web=1`.")
    else:
        s.out.lines(render_ps(dynos))


@command("ps:scale")
@click.argument("changes", metavar="TYPE=N[:SIZE]|TYPE+N|TYPE-N...", nargs=-1)
def ps_scale(s: Session, changes: tuple[str, ...]) -> None:
    """Set how many dynos of each process type run, and optionally their size.

    Without arguments, prints the current formation.

    \b
    Examples:
      $ dynoctl ps:scale web=3 worker=1:standard-2x -a hello
      $ dynoctl ps:scale web+1 worker-1 -a hello
      $ dynoctl ps:scale -a hello
      web=3:standard-1x worker=1:standard-2x
    """
    if not changes:
        formation = s.client.request("GET", s.path("formation"))
        if s.out.as_json:
            s.out.json(formation)
        else:
            s.out.echo(describe_formation(formation))
        return
    parsed = parse_scale(changes)
    current = None
    if needs_formation(parsed):
        formation = s.client.request("GET", s.path("formation"))
        current = {f["type"]: int(f["quantity"]) for f in formation}
    updates = scale_updates(parsed, current)
    with s.out.action(f"Scaling dynos on {s.mark}"):
        result = s.client.request("PATCH", s.path("formation"), {"updates": updates})
    if s.out.as_json:
        s.out.json(result)
        return
    touched = {u["type"] for u in updates}
    now = [
        f"{f['type']} at {f['quantity']}:{f['size']}"
        for f in result
        if f["type"] in touched
    ]
    s.out.echo(f"Now running {', '.join(now)}.")


@command("ps:type")
@click.argument("changes", metavar="TYPE=SIZE...", nargs=-1)
def ps_type(s: Session, changes: tuple[str, ...]) -> None:
    """Set the dyno size of process types; without arguments, show the sizes.

    Sizes: eco, basic, standard-1x, standard-2x, performance-m, performance-l,
    and any the host's dynod.toml adds.

    \b
    Example:
      $ dynoctl ps:type web=standard-2x -a hello
      Type  Size         Qty
      ────  ───────────  ───
      web   standard-2x  2
    """
    if changes:
        updates = parse_types(changes)
        with s.out.action(f"Resizing dynos on {s.mark}"):
            formation = s.client.request(
                "PATCH", s.path("formation"), {"updates": updates}
            )
    else:
        formation = s.client.request("GET", s.path("formation"))
    if s.out.as_json:
        s.out.json(formation)
        return
    rows = [[f["type"], f["size"], str(f["quantity"])] for f in formation]
    s.out.lines(render_table(["Type", "Size", "Qty"], rows))


def target_words(target: str | None) -> str:
    """``all dynos``, ``web dynos`` or ``web.1 dyno`` for progress lines."""
    if target is None:
        return "all dynos"
    return f"{target} dyno" if "." in target else f"{target} dynos"


@command("ps:restart")
@click.argument("target", metavar="[TYPE|DYNO]", required=False)
def ps_restart(s: Session, target: str | None) -> None:
    """Restart all dynos, the dynos of one type, or one dyno.

    \b
    Examples:
      $ dynoctl ps:restart -a hello
      $ dynoctl ps:restart web -a hello
      $ dynoctl ps:restart web.2 -a hello
    """
    path = s.path("dynos") if target is None else s.path("dynos", target)
    with s.out.action(f"Restarting {target_words(target)} on {s.mark}"):
        result = s.client.request("DELETE", path)
    if s.out.as_json:
        s.out.json(result)


@command("ps:stop")
@click.argument("target", metavar="TYPE|DYNO")
def ps_stop(s: Session, target: str) -> None:
    """Stop the dynos of one type, or one dyno.

    A stopped formation dyno is started again by the next restart, scale or
    release; scale to 0 to keep a type stopped.

    \b
    Example:
      $ dynoctl ps:stop run.4821 -a hello
    """
    with s.out.action(f"Stopping {target_words(target)} on {s.mark}"):
        result = s.client.request("POST", s.path("dynos", target, "actions", "stop"))
    if s.out.as_json:
        s.out.json(result)


COMMANDS = [ps, ps_scale, ps_type, ps_restart, ps_stop]
