"""``features``, ``features:info``, ``features:enable`` and ``features:disable``."""

from __future__ import annotations

import click

from dynod.cli.base import Session, command
from dynod.cli.output import render_table


@command("features")
def features(s: Session) -> None:
    """List the app's features and whether each is on.

    \b
    Example:
      $ dynoctl features -a hello
      [+] preboot  Start new web dynos and route to them before the old ones stop, ...
    """
    found = s.client.request("GET", s.path("features"))
    if s.out.as_json:
        s.out.json(found)
        return
    rows = [
        ["[+]" if f["enabled"] else "[ ]", f["name"], f["description"]] for f in found
    ]
    s.out.heading(f"App Features {s.mark}")
    s.out.lines(render_table(None, rows))


@command("features:info")
@click.argument("name")
def features_info(s: Session, name: str) -> None:
    """Show one feature of the app."""
    found = s.client.request("GET", s.path("features", name))
    if s.out.as_json:
        s.out.json(found)
        return
    s.out.heading(found["name"])
    s.out.lines(
        render_table(
            None,
            [
                ["Description:", found["description"]],
                ["Enabled:", "true" if found["enabled"] else "false"],
            ],
        )
    )


def _toggle(s: Session, name: str, on: bool) -> None:
    verb = "Enabling" if on else "Disabling"
    with s.out.action(f"{verb} {name} for {s.mark}"):
        found = s.client.request("PATCH", s.path("features", name), {"enabled": on})
    if s.out.as_json:
        s.out.json(found)


@command("features:enable")
@click.argument("name")
def features_enable(s: Session, name: str) -> None:
    """Turn a feature on; it applies from the next rollout.

    preboot (on by default) starts new web dynos and routes to them before the
    old ones get SIGTERM, so deploys and restarts lose no request.

    \b
    Example:
      $ dynoctl features:enable preboot -a hello
    """
    _toggle(s, name, True)


@command("features:disable")
@click.argument("name")
def features_disable(s: Session, name: str) -> None:
    """Turn a feature off; it applies from the next rollout.

    With preboot off, a new web dyno starts as the old one gets SIGTERM.

    \b
    Example:
      $ dynoctl features:disable preboot -a hello
    """
    _toggle(s, name, False)


COMMANDS = [features, features_info, features_enable, features_disable]
