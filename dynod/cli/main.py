"""The ``dynoctl`` entry point: the command group and its error handling."""

from __future__ import annotations

from typing import Any

import click

from dynod.cli.base import Failure
from dynod.cli.commands import (
    apps,
    authorizations,
    builds,
    certs,
    config,
    domains,
    drains,
    features,
    logs,
    maintenance,
    metrics,
    ps,
    releases,
    run,
)
from dynod.errors import DynodError


class DynoctlGroup(click.Group):
    """Turns every deliberate dynod error into a printed failure with exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DynodError as exc:
            raise Failure(str(exc)) from exc


@click.group(
    cls=DynoctlGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="dynod", prog_name="dynoctl")
def cli() -> None:
    """Drive dynod, the self-hosted Heroku runtime.

    Commands are named as Heroku names them.  Every command takes -a APP (or
    $DYNOD_APP), --json for the API's JSON and -q to silence progress.  Exit
    status: 0 done, 1 the operation failed (stderr says why), 2 usage error.

    \b
    The API is found through the environment:
      DYNOD_API        unix:/run/dynod/api.sock (default) or http://HOST:PORT
      DYNOD_API_TOKEN  bearer token for an http:// API
      DYNOD_APP        the app when -a is not given
      NO_COLOR         set to print no colours even on a terminal

    \b
    A first deploy:
      $ dynoctl apps:create hello
      $ dynoctl deploy ./hello -a hello
      $ dynoctl ps:scale web=2 -a hello
      $ dynoctl logs -t -a hello
    """


for module in (apps, builds, releases, config, ps, run, logs, drains, authorizations):
    for cmd in module.COMMANDS:
        cli.add_command(cmd)
for module in (domains, certs, maintenance, metrics):
    for cmd in module.COMMANDS:
        cli.add_command(cmd)
for cmd in features.COMMANDS:
    cli.add_command(cmd)


def main() -> None:
    """Run dynoctl with the process's arguments; exits with its status."""
    cli(prog_name="dynoctl")
