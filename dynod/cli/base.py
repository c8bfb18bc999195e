"""What every dynoctl command shares: its options, its session and its failures.

:func:`command` turns a function into a click command that also takes
``-a/--app`` (or ``$DYNOD_APP``), ``--json`` and ``-q/--quiet``, and calls the
function with a :class:`Session` first.  Exit codes follow one rule:

- 0: done;
- 1: the operation failed (:class:`Failure`, or any
  :class:`~dynod.errors.DynodError`, which the group turns into one); the
  message goes to stderr behind Heroku's `` !    `` marker;
- 2: usage error (:class:`click.UsageError`, raised by click or by a command).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import IO, Any
from urllib.parse import quote

import click

from dynod.cli.client import DEFAULT_API, Client, Endpoint
from dynod.cli.output import APP_MARK, Output

CommandFunc = Callable[..., None]


class Failure(click.ClickException):
    """The operation failed; exit 1 with the message behind `` !    ``."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        for line in self.format_message().splitlines() or [""]:
            click.echo(click.style(" !    ", fg="red") + line, err=True)


class Session:
    """One command invocation: its output, its app and its API client."""

    def __init__(self, out: Output, app_name: str | None) -> None:
        self.out = out
        self.app_name = app_name
        self._client: Client | None = None

    @property
    def app(self) -> str:
        """The app the command is about; a usage error if none was given."""
        if not self.app_name:
            raise click.UsageError(
                "No app given; pass -a NAME or set $DYNOD_APP.",
                click.get_current_context(silent=True),
            )
        return self.app_name

    @property
    def mark(self) -> str:
        """``⬢ NAME``, as progress lines name the app."""
        return f"{APP_MARK} {self.app}"

    @property
    def client(self) -> Client:
        """The API client, made on first use from ``$DYNOD_API``."""
        if self._client is None:
            api = os.environ.get("DYNOD_API") or DEFAULT_API
            token = os.environ.get("DYNOD_API_TOKEN")
            self._client = Client(Endpoint.parse(api, token))
        return self._client

    def path(self, *parts: str) -> str:
        """``/apps/APP/PART/...`` with each part quoted."""
        return "/" + "/".join(quote(p, safe="") for p in ("apps", self.app, *parts))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def command(
    name: str, *, app: bool = True, context_settings: dict[str, Any] | None = None
) -> Callable[[CommandFunc], click.Command]:
    """Make a dynoctl command named ``name`` from ``func(session, **params)``.

    Options and arguments declared on ``func`` with click decorators are kept;
    the shared ``--json`` and ``--quiet`` (and ``-a/--app`` unless ``app`` is
    False) are added after them.  The docstring is the ``--help`` text.
    """

    def wrap(func: CommandFunc) -> click.Command:
        @functools.wraps(func)
        def callback(
            *args: Any,
            app_name: str | None = None,
            as_json: bool = False,
            quiet: bool = False,
            **kwargs: Any,
        ) -> None:
            session = Session(Output(as_json=as_json, quiet=quiet), app_name)
            click.get_current_context().call_on_close(session.close)
            func(session, *args, **kwargs)

        cmd = click.command(name, context_settings=context_settings)(callback)
        if app:
            cmd.params.append(
                click.Option(
                    ["-a", "--app", "app_name"],
                    envvar="DYNOD_APP",
                    metavar="APP",
                    help="The app to act on (default: $DYNOD_APP).",
                )
            )
        cmd.params.append(
            click.Option(
                ["--json", "as_json"],
                is_flag=True,
                help="Print the API's JSON instead of the human form.",
            )
        )
        cmd.params.append(
            click.Option(["-q", "--quiet"], is_flag=True, help="Do not print progress.")
        )
        return cmd

    return wrap
