"""``maintenance``, ``maintenance:on`` and ``maintenance:off``."""

from __future__ import annotations

from dynod.cli.base import Session, command


@command("maintenance")
def maintenance(s: Session) -> None:
    """Print whether the app is in maintenance mode (on or off).

    \b
    Example:
      $ dynoctl maintenance -a hello
      off
    """
    app = s.client.request("GET", s.path())
    if s.out.as_json:
        s.out.json({"maintenance": bool(app.get("maintenance"))})
    else:
        s.out.echo("on" if app.get("maintenance") else "off")


def _set(s: Session, on: bool) -> None:
    verb = "Enabling" if on else "Disabling"
    with s.out.action(f"{verb} maintenance mode for {s.mark}"):
        app = s.client.request("PATCH", s.path(), {"maintenance": on})
    if s.out.as_json:
        s.out.json(app)


@command("maintenance:on")
def maintenance_on(s: Session) -> None:
    """Serve the maintenance page (503, H80) instead of the app; dynos keep running.

    \b
    Example:
      $ dynoctl maintenance:on -a hello
      Enabling maintenance mode for ⬢ hello... done
    """
    _set(s, True)


@command("maintenance:off")
def maintenance_off(s: Session) -> None:
    """Route requests to the app again.

    \b
    Example:
      $ dynoctl maintenance:off -a hello
      Disabling maintenance mode for ⬢ hello... done
    """
    _set(s, False)


COMMANDS = [maintenance, maintenance_on, maintenance_off]
