"""``certs``, ``certs:add``, ``certs:remove`` and the ``certs:auto`` commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dynod.cli.base import Failure, Session, command
from dynod.cli.output import format_when, render_table

# How Heroku's CLI shows each ACM status.
_ACM_SHOWN = {
    None: "Waiting",
    "pending": "Pending",
    "verified": "In Progress",
    "dns-verified": "DNS Verified",
    "ok": "OK",
    "cert issued": "Cert Issued",
    "failing": "Failing",
    "failed": "Failed",
}


def _cert_rows(certs: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            c["name"],
            ", ".join(c["ssl_cert"]["cert_domains"]),
            (c["ssl_cert"]["expires_at"] or "").replace("T", " "),
            "ACM" if c["ssl_cert"]["acm"] else "SNI",
            ", ".join(c["domains"]) or "-",
        ]
        for c in certs
    ]


@command("certs")
def certs(s: Session) -> None:
    """List the app's TLS certificates and the domains each one serves.

    \b
    Example:
      $ dynoctl certs -a hello
      Name   Common Name(s)   Expires               Type  Domains
      ─────  ───────────────  ────────────────────  ────  ───────────────
      sni-1  www.example.com  2027-01-01 00:00:00Z  SNI   www.example.com
    """
    listed: list[dict[str, Any]] = s.client.request("GET", s.path("sni-endpoints"))
    if s.out.as_json:
        s.out.json(listed)
        return
    if not listed:
        s.out.info(f"{s.app} has no certificates; add one with `dynoctl certs:add`.")
        return
    headers = ["Name", "Common Name(s)", "Expires", "Type", "Domains"]
    s.out.lines(render_table(headers, _cert_rows(listed)))


@command("certs:add")
@click.argument("cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def certs_add(s: Session, cert: Path, key: Path) -> None:
    """Serve the certificate chain in CERT with its private key in KEY.

    The router serves it over HTTPS for each of the app's hosts it covers.

    \b
    Example:
      $ dynoctl certs:add server.crt server.key -a hello
      Adding SSL certificate to ⬢ hello... done
    """
    body = {"certificate_chain": cert.read_text(), "private_key": key.read_text()}
    with s.out.action(f"Adding SSL certificate to {s.mark}"):
        added = s.client.request("POST", s.path("sni-endpoints"), body)
    if s.out.as_json:
        s.out.json(added)
        return
    headers = ["Name", "Common Name(s)", "Expires", "Type", "Domains"]
    s.out.lines(render_table(headers, _cert_rows([added])))


@command("certs:remove")
@click.option("--name", help="The certificate to remove (when there are several).")
def certs_remove(s: Session, name: str | None) -> None:
    """Stop serving a certificate and delete it.

    \b
    Example:
      $ dynoctl certs:remove --name sni-1 -a hello
      Removing SSL certificate sni-1 from ⬢ hello... done
    """
    if name is None:
        listed = s.client.request("GET", s.path("sni-endpoints"))
        uploaded = [c["name"] for c in listed if not c["ssl_cert"]["acm"]]
        if len(uploaded) != 1:
            raise Failure(
                "The app has "
                + (f"certificates {', '.join(uploaded)}" if uploaded else "none")
                + ": name the one to remove with --name."
            )
        name = uploaded[0]
    with s.out.action(f"Removing SSL certificate {name} from {s.mark}"):
        gone = s.client.request("DELETE", s.path("sni-endpoints", name))
    if s.out.as_json:
        s.out.json(gone)


@command("certs:auto")
def certs_auto(s: Session) -> None:
    """Show automatic certificate management and each domain's status.

    \b
    Example:
      $ dynoctl certs:auto -a hello
      === Automatic Certificate Management is enabled on hello
      Domain           Status       Reason  Last Updated
      ───────────────  ───────────  ──────  ─────────────────────
      www.example.com  Cert Issued          2026/01/01 10:00:00 +0000 (~ 1m ago)
    """
    acm = s.client.request("GET", s.path("acm"))
    if s.out.as_json:
        s.out.json(acm)
        return
    state = "enabled" if acm["acm"] else "disabled"
    s.out.heading(f"Automatic Certificate Management is {state} on {s.app}")
    if not acm["acm"]:
        return
    rows = [
        [
            d["hostname"],
            _ACM_SHOWN.get(d.get("acm_status"), str(d.get("acm_status"))),
            d.get("acm_status_reason") or "",
            format_when(d.get("updated_at")),
        ]
        for d in acm["domains"]
    ]
    if not rows:
        s.out.info("The app has no custom domains; add one with `dynoctl domains:add`.")
        return
    s.out.lines(render_table(["Domain", "Status", "Reason", "Last Updated"], rows))
    statuses = {d.get("acm_status") for d in acm["domains"]}
    if "failing" in statuses:
        s.out.info("Some domains are failing: check their DNS with `dynoctl domains`.")
    if "failed" in statuses:
        s.out.info(
            "Some domains failed: fix the cause, then `dynoctl certs:auto:refresh`."
        )


@command("certs:auto:enable")
def certs_auto_enable(s: Session) -> None:
    """Get certificates for the app's custom domains from the ACME server.

    \b
    Example:
      $ dynoctl certs:auto:enable -a hello
      Enabling Automatic Certificate Management... done
    """
    with s.out.action("Enabling Automatic Certificate Management"):
        result = s.client.request("POST", s.path("acm"), {})
    if s.out.as_json:
        s.out.json(result)


@command("certs:auto:disable")
def certs_auto_disable(s: Session) -> None:
    """Stop automatic certificates and remove the ones obtained.

    \b
    Example:
      $ dynoctl certs:auto:disable -a hello
      Disabling Automatic Certificate Management... done
    """
    with s.out.action("Disabling Automatic Certificate Management"):
        result = s.client.request("DELETE", s.path("acm"))
    if s.out.as_json:
        s.out.json(result)


@command("certs:auto:refresh")
def certs_auto_refresh(s: Session) -> None:
    """Order a new certificate now (also after a failure gave up).

    \b
    Example:
      $ dynoctl certs:auto:refresh -a hello
      Refreshing Automatic Certificate Management... done
    """
    with s.out.action("Refreshing Automatic Certificate Management"):
        result = s.client.request("PATCH", s.path("acm"), {})
    if s.out.as_json:
        s.out.json(result)


COMMANDS = [
    certs,
    certs_add,
    certs_remove,
    certs_auto,
    certs_auto_enable,
    certs_auto_disable,
    certs_auto_refresh,
]
