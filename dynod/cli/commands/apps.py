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
    """Show an app's runtime settings.

    \b
    boot_timeout  seconds a web dyno has to listen on $PORT, and to pass
                  its health check if there is one (R10 after it)
    stop_timeout  seconds dynos get between SIGTERM and SIGKILL (R12)
    health_path   a path new web dynos must answer with 2xx or 3xx, asked
                  through the router with the app's own Host, before they
                  serve and the dynos they replace stop; empty for none
    worker_surge  dynos of each non-web type a rollout replaces at a time,
                  each new one started before its old one stops; 0 replaces
                  them all at once

    \b
    Example:
      $ dynoctl apps:settings -a hello
      boot_timeout: 60
      stop_timeout: 30
      health_path:
      worker_surge: 0
    """
    settings = s.client.request("GET", s.path("settings"))
    if s.out.as_json:
        s.out.json(settings)
        return
    s.out.lines(render_pairs({k: _setting(v) for k, v in settings.items()}))


@command("apps:settings:set")
@click.argument("settings", nargs=-1, required=True)
def apps_settings_set(s: Session, settings: tuple[str, ...]) -> None:
    """Change runtime settings (see apps:settings for what each means).

    Takes boot_timeout=SECONDS, stop_timeout=SECONDS, health_path=/PATH
    (health_path= removes it) and worker_surge=N; settings not named keep
    their values.  They apply to dynos started from then on.

    \b
    Example:
      $ dynoctl apps:settings:set boot_timeout=120 health_path=/up -a hello
      Updating settings of ⬢ hello... done
      boot_timeout: 120
      stop_timeout: 30
      health_path:  /up
      worker_surge: 0
    """
    changes = parse_settings(settings)
    with s.out.action(f"Updating settings of {s.mark}"):
        result = s.client.request("PATCH", s.path("settings"), changes)
    if s.out.as_json:
        s.out.json(result)
        return
    s.out.lines(render_pairs({k: _setting(v) for k, v in result.items()}))


def _setting(value: object) -> str:
    """A setting as the user wrote it: 60 rather than 60.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


COMMANDS = [
    apps,
    apps_create,
    apps_info,
    apps_destroy,
    apps_settings,
    apps_settings_set,
]
