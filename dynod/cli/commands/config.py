"""``config``, ``config:get``, ``config:set`` and ``config:unset``."""

from __future__ import annotations

import shlex
from typing import Any

import click

from dynod.cli.base import Session, command
from dynod.cli.output import join_words, render_pairs
from dynod.cli.parsing import parse_assignments, parse_keys


def newest_version(s: Session) -> int | None:
    """The version of the app's newest release, which a config change just made."""
    newest: list[dict[str, Any]] = s.client.request(
        "GET", s.path("releases"), params={"limit": 1}
    )
    return int(newest[-1]["version"]) if newest else None


@command("config")
@click.option("-s", "--shell", is_flag=True, help="Print KEY=value lines for a shell.")
def config(s: Session, shell: bool) -> None:
    """Show an app's config vars.

    \b
    Examples:
      $ dynoctl config -a hello
      === hello Config Vars
      DATABASE_URL: postgres://db/hello
      WELCOME:      hi
      $ dynoctl config --shell -a hello > .env
    """
    values: dict[str, str] = s.client.request("GET", s.path("config-vars"))
    if s.out.as_json:
        s.out.json(values)
    elif shell:
        s.out.lines([f"{k}={shlex.quote(v)}" for k, v in sorted(values.items())])
    else:
        s.out.heading(f"{s.app} Config Vars")
        s.out.lines(render_pairs(dict(sorted(values.items()))))


@command("config:get")
@click.argument("key")
def config_get(s: Session, key: str) -> None:
    """Print the value of one config var (an empty line if it is not set).

    \b
    Example:
      $ dynoctl config:get WELCOME -a hello
      hi
    """
    values: dict[str, str] = s.client.request("GET", s.path("config-vars"))
    if s.out.as_json:
        s.out.json(values.get(key))
    else:
        s.out.echo(values.get(key, ""))


@command("config:set")
@click.argument("assignments", metavar="KEY=VALUE...", nargs=-1, required=True)
def config_set(s: Session, assignments: tuple[str, ...]) -> None:
    """Set config vars, making a new release and restarting the dynos.

    A value is everything after the first =, so it may contain = itself.

    \b
    Example:
      $ dynoctl config:set WELCOME=hi 'QUERY=a=1&b=2' -a hello
      Setting WELCOME, QUERY and restarting ⬢ hello... done, v5
      WELCOME: hi
      QUERY:   a=1&b=2
    """
    changes = parse_assignments(assignments, hint="'KEY=VALUE'")
    with s.out.action(f"Setting {', '.join(changes)} and restarting {s.mark}") as step:
        result = s.client.request("PATCH", s.path("config-vars"), changes)
        version = newest_version(s)
        step.suffix = f"v{version}" if version else ""
    if s.out.as_json:
        s.out.json(result)
    else:
        s.out.lines(render_pairs(changes))


@command("config:unset")
@click.argument("keys", metavar="KEY...", nargs=-1, required=True)
def config_unset(s: Session, keys: tuple[str, ...]) -> None:
    """Remove config vars, making a new release and restarting the dynos.

    \b
    Example:
      $ dynoctl config:unset WELCOME -a hello
      Unsetting WELCOME and restarting ⬢ hello... done, v6
    """
    names = parse_keys(keys, hint="'KEY'")
    with s.out.action(f"Unsetting {join_words(names)} and restarting {s.mark}") as step:
        result = s.client.request("PATCH", s.path("config-vars"), dict.fromkeys(names))
        version = newest_version(s)
        step.suffix = f"v{version}" if version else ""
    if s.out.as_json:
        s.out.json(result)


COMMANDS = [config, config_get, config_set, config_unset]
