"""``authorizations``, ``authorizations:create`` and ``authorizations:revoke``."""

from __future__ import annotations

from typing import Any

import click

from dynod.cli.base import Session, command
from dynod.cli.output import format_when, render_pairs, render_table


@command("authorizations", app=False)
def authorizations(s: Session) -> None:
    """List the API tokens (their ids and descriptions, never the tokens).

    \b
    Example:
      $ dynoctl authorizations
      === Authorizations
      ID                                    Description  Created
      ────────────────────────────────────  ───────────  ──────────────────────
      6f1c2f9e-...                          laptop       2026/12/03 18:12:23 +0000
    """
    listed: list[dict[str, Any]] = s.client.request("GET", "/oauth/authorizations")
    if s.out.as_json:
        s.out.json(listed)
        return
    if not listed:
        s.out.info(
            "No authorizations; create one with `dynoctl authorizations:create`."
        )
        return
    s.out.heading("Authorizations")
    rows = [[a["id"], a["description"], format_when(a["created_at"])] for a in listed]
    s.out.lines(render_table(["ID", "Description", "Created"], rows))


@command("authorizations:create", app=False)
@click.option("-d", "--description", default="", help="What the token is for.")
def authorizations_create(s: Session, description: str) -> None:
    """Create an API token for the TCP listener (dynod --api-listen).

    The token is printed once and cannot be shown again.  Use it as
    DYNOD_API_TOKEN with DYNOD_API=http://HOST:PORT, or as HEROKU_API_KEY with
    the heroku CLI (HEROKU_HOST=http://HOST:PORT).  Works only on the dynod
    host, over the local socket.

    \b
    Example:
      $ dynoctl authorizations:create -d laptop
      Creating OAuth Authorization... done
      ID:          6f1c2f9e-...
      Description: laptop
      Token:       4b1d...
    """
    with s.out.action("Creating OAuth Authorization"):
        made = s.client.request(
            "POST", "/oauth/authorizations", {"description": description}
        )
    if s.out.as_json:
        s.out.json(made)
        return
    s.out.lines(
        render_pairs(
            [
                ("ID", made["id"]),
                ("Description", made["description"]),
                ("Token", made["access_token"]["token"]),
            ]
        )
    )


@command("authorizations:revoke", app=False)
@click.argument("auth_id", metavar="ID")
def authorizations_revoke(s: Session, auth_id: str) -> None:
    """Revoke the API token with this ID; requests carrying it are refused."""
    with s.out.action(f"Revoking authorization {auth_id}"):
        revoked = s.client.request("DELETE", f"/oauth/authorizations/{auth_id}")
    if s.out.as_json:
        s.out.json(revoked)


COMMANDS = [authorizations, authorizations_create, authorizations_revoke]
