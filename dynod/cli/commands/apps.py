"""``apps``, ``apps:create``, ``apps:info``, ``apps:destroy`` and the app settings."""

from __future__ import annotations

import sys
from typing import Any

import click

from dynod.cli.base import Failure, Session, command
from dynod.cli.output import APP_MARK, format_when, render_pairs
from dynod.cli.parsing import parse_settings


@command("apps", app=False)
def apps(s: Session) -> None:
    """List the apps.

    \b
    Example:
      $ dynoctl apps
      === Apps
      hello
      shop
    """
    listed: list[dict[str, Any]] = s.client.request("GET", "/apps")
    if s.out.as_json:
        s.out.json(listed)
        return
    if not listed:
        s.out.info("You have no apps; create one with `dynoctl apps:create NAME`.")
        return
    s.out.heading("Apps")
    s.out.lines(sorted(a["name"] for a in listed))


@command("apps:create", app=False)
@click.argument("name")
def apps_create(s: Session, name: str) -> None:
    """Create an app named NAME and print its URL.

    Names are 3 to 30 characters: lower-case letters, digits and dashes,
    starting with a letter and not ending with a dash.

    \b
    Example:
      $ dynoctl apps:create hello
      Creating ⬢ hello... done
      http://hello.localhost/
    """
    with s.out.action(f"Creating {APP_MARK} {name}"):
        app = s.client.request("POST", "/apps", {"name": name})
    if s.out.as_json:
        s.out.json(app)
        return
    s.out.echo(app.get("web_url") or name)


@command("apps:info")
def apps_info(s: Session) -> None:
    """Show an app: its URL, its current release and its dynos.

    \b
    Example:
      $ dynoctl apps:info -a hello
      === hello
      Web URL:         http://hello.localhost/
      Current release: v3
    """
    app = s.client.request("GET", s.path())
    if s.out.as_json:
        s.out.json(app)
        return
    formation: list[dict[str, Any]] = s.client.request("GET", s.path("formation"))
    current = app.get("current_release")
    dynos = ", ".join(
        f"{f['type']}: {f['quantity']}" for f in formation if f.get("quantity")
    )
    s.out.heading(app["name"])
    s.out.lines(
        render_pairs(
            [
                ("Web URL", app.get("web_url") or ""),
                ("Current release", f"v{current}" if current else "none"),
                ("Dynos", dynos or "none"),
                ("Stack", (app.get("stack") or {}).get("name", "")),
                ("Created", format_when(app.get("created_at"))),
                ("Released", format_when(app.get("released_at"))),
                ("ID", app.get("id", "")),
            ]
        )
    )


@command("apps:destroy")
@click.argument("name", required=False)
@click.option("--confirm", metavar="NAME", help="The app's name, to confirm.")
def apps_destroy(s: Session, name: str | None, confirm: str | None) -> None:
    """Destroy the app NAME (or -a APP) with its dynos, releases and logs.

    This cannot be undone, so the name must be given again with --confirm; on
    a terminal dynoctl asks for it instead.

    \b
    Example:
      $ dynoctl apps:destroy hello --confirm hello
      Destroying ⬢ hello (including all its dynos)... done
    """
    target = s.app_name = name or s.app
    if confirm is None and sys.stdin.isatty():
        s.out.warn(f"This destroys {APP_MARK} {target}, its releases and its logs.")
        confirm = click.prompt("To proceed, type the app's name", err=True)
    if confirm != target:
        raise Failure(
            f"Confirmation {confirm!r} does not match {target!r}; re-run with "
            f"--confirm {target} to destroy it."
            if confirm is not None
            else f"Destroying {target!r} needs --confirm {target}."
        )
    with s.out.action(f"Destroying {APP_MARK} {target} (including all its dynos)"):
        gone = s.client.request("DELETE", s.path())
    if s.out.as_json:
        s.out.json(gone)


@command("apps:settings")
def apps_settings(s: Session) -> None:
    """Show an app's runtime settings, in seconds.

    boot_timeout is how long a web dyno may take to listen on $PORT (R10 after
    it); stop_timeout is how long dynos get between SIGTERM and SIGKILL.

    \b
    Example:
      $ dynoctl apps:settings -a hello
      boot_timeout: 60
      stop_timeout: 30
    """
    settings = s.client.request("GET", s.path("settings"))
    if s.out.as_json:
        s.out.json(settings)
        return
    s.out.lines(render_pairs({k: str(v) for k, v in settings.items()}))


@command("apps:settings:set")
@click.argument("settings", nargs=-1, required=True)
def apps_settings_set(s: Session, settings: tuple[str, ...]) -> None:
    """Change runtime settings: boot_timeout=SECONDS stop_timeout=SECONDS.

    \b
    Example:
      $ dynoctl apps:settings:set boot_timeout=120 -a hello
      Updating settings of ⬢ hello... done
      boot_timeout: 120
      stop_timeout: 30
    """
    changes = parse_settings(settings)
    with s.out.action(f"Updating settings of {s.mark}"):
        result = s.client.request("PATCH", s.path("settings"), changes)
    if s.out.as_json:
        s.out.json(result)
        return
    s.out.lines(render_pairs({k: str(v) for k, v in result.items()}))


COMMANDS = [
    apps,
    apps_create,
    apps_info,
    apps_destroy,
    apps_settings,
    apps_settings_set,
]
