"""``drains``, ``drains:add`` and ``drains:remove``: where an app's logs are shipped."""

from __future__ import annotations

from typing import Any

import click

from dynod.cli.base import Failure, Session, command


@command("drains")
def drains(s: Session) -> None:
    """List an app's log drains and their tokens.

    \b
    Example:
      $ dynoctl drains -a hello
      === hello Drains
      syslog+tls://logs.example.com:6514 (d.0f4a...)
    """
    found: list[dict[str, Any]] = s.client.request("GET", s.path("log-drains"))
    if s.out.as_json:
        s.out.json(found)
    elif not found:
        s.out.info(f"No drains on {s.mark}; add one with `dynoctl drains:add URL`.")
    else:
        s.out.heading(f"{s.app} Drains")
        s.out.lines([f"{d['url']} ({d['token']})" for d in found])


@command("drains:add")
@click.argument("url")
def drains_add(s: Session, url: str) -> None:
    """Ship the app's log stream to URL from now on (at most 5 drains per app).

    URL is syslog://HOST:PORT, syslog+tls://HOST:PORT (RFC 5424 with octet
    counting; the drain token is the HOSTNAME) or https://[USER:PASS@]HOST/PATH
    (logplex-1 batches).

    \b
    Example:
      $ dynoctl drains:add syslog+tls://logs.example.com:6514 -a hello
      Successfully added drain syslog+tls://logs.example.com:6514 (d.0f4a...)
    """
    drain = s.client.request("POST", s.path("log-drains"), {"url": url})
    if s.out.as_json:
        s.out.json(drain)
    else:
        s.out.echo(f"Successfully added drain {drain['url']} ({drain['token']})")


@command("drains:remove")
@click.argument("ref", metavar="URL|TOKEN")
def drains_remove(s: Session, ref: str) -> None:
    """Stop shipping logs to a drain, named by its URL or its token.

    \b
    Example:
      $ dynoctl drains:remove syslog+tls://logs.example.com:6514 -a hello
      Successfully removed drain syslog+tls://logs.example.com:6514
    """
    # Look the drain up first: a URL does not travel well as a path segment.
    found: list[dict[str, Any]] = s.client.request("GET", s.path("log-drains"))
    match = [d for d in found if ref in (d["url"], d["token"], d["id"])]
    if not match:
        raise Failure(
            f"No drain {ref} on {s.app}: list them with `dynoctl drains -a {s.app}`."
        )
    drain = s.client.request("DELETE", s.path("log-drains", match[0]["id"]))
    if s.out.as_json:
        s.out.json(drain)
    else:
        s.out.echo(f"Successfully removed drain {drain['url']}")


COMMANDS = [drains, drains_add, drains_remove]
