"""``domains``, ``domains:add`` and ``domains:remove``."""

from __future__ import annotations

from typing import Any

import click

from dynod.cli.base import Session, command
from dynod.cli.output import render_table


@command("domains")
def domains(s: Session) -> None:
    """List the app's domains: its default one, then its custom ones.

    \b
    Example:
      $ dynoctl domains -a hello
      === hello Heroku Domain
      hello.localhost
      === hello Custom Domains
      Domain Name      DNS Target       SNI Endpoint
      ───────────────  ───────────────  ────────────
      www.example.com  hello.localhost  sni-1
    """
    listed: list[dict[str, Any]] = s.client.request("GET", s.path("domains"))
    if s.out.as_json:
        s.out.json(listed)
        return
    s.out.heading(f"{s.app} Heroku Domain")
    s.out.lines([d["hostname"] for d in listed if d["kind"] == "heroku"])
    custom = [d for d in listed if d["kind"] == "custom"]
    if not custom:
        return
    s.out.echo()
    s.out.heading(f"{s.app} Custom Domains")
    rows = [
        [
            d["hostname"],
            d.get("cname") or "",
            (d.get("sni_endpoint") or {}).get("name", ""),
        ]
        for d in custom
    ]
    s.out.lines(render_table(["Domain Name", "DNS Target", "SNI Endpoint"], rows))


@command("domains:add")
@click.argument("hostname")
def domains_add(s: Session, hostname: str) -> None:
    """Route HOSTNAME to the app, and print the DNS target to point it at.

    \b
    Example:
      $ dynoctl domains:add www.example.com -a hello
      Adding www.example.com to ⬢ hello... done
      Point www.example.com's DNS at this host (CNAME hello.localhost).
    """
    body = {"hostname": hostname, "sni_endpoint": None}
    with s.out.action(f"Adding {hostname} to {s.mark}"):
        domain = s.client.request("POST", s.path("domains"), body)
    if s.out.as_json:
        s.out.json(domain)
        return
    s.out.info(
        f"Point {domain['hostname']}'s DNS at this host (CNAME {domain['cname']})."
    )


@command("domains:remove")
@click.argument("hostname")
def domains_remove(s: Session, hostname: str) -> None:
    """Stop routing HOSTNAME to the app.

    \b
    Example:
      $ dynoctl domains:remove www.example.com -a hello
      Removing www.example.com from ⬢ hello... done
    """
    with s.out.action(f"Removing {hostname} from {s.mark}"):
        domain = s.client.request("DELETE", s.path("domains", hostname))
    if s.out.as_json:
        s.out.json(domain)


COMMANDS = [domains, domains_add, domains_remove]
