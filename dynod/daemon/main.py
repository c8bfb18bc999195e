"""``dynod``: the root daemon.

dynod serve [OPTIONS]      run the daemon in the foreground
dynod teardown [OPTIONS]   stop every dyno and the router, remove every
                           kernel object and firewall rule of an instance
dynod openapi              print the OpenAPI description of the API
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import click
import structlog

from dynod import config as config_mod
from dynod.errors import DynodError


def _options(f: Any) -> Any:
    options = [
        click.option(
            "--config",
            "config_file",
            type=click.Path(path_type=Path),
            help="TOML settings file [default: /etc/dynod/dynod.toml].",
        ),
        click.option(
            "--state-dir",
            type=click.Path(path_type=Path),
            help="Database, slugs, stacks and logs [default: /var/lib/dynod].",
        ),
        click.option(
            "--run-dir",
            type=click.Path(path_type=Path),
            help="API socket and route table [default: /run/dynod].",
        ),
        click.option("--http-port", type=int, help="Router HTTP port [default: 80]."),
        click.option(
            "--https-port", type=int, help="Router HTTPS port [default: 443]."
        ),
        click.option("--api-listen", help="Extra TCP listener for the API, HOST:PORT."),
        click.option(
            "--dyno-subnet", help="IPv4 subnet for dynos [default: 10.217.0.0/16]."
        ),
        click.option(
            "--instance",
            help="Name prefix of kernel objects and chains [default: dynod].",
        ),
        click.option(
            "--router-bind", help="Address the router listens on [default: 0.0.0.0]."
        ),
        click.option(
            "--stack-dir",
            type=click.Path(path_type=Path),
            help="Where stacks are kept [default: STATE_DIR/stacks].",
        ),
        click.option(
            "--log-level", type=click.Choice(["debug", "info", "warning", "error"])
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _load(config_file: Path | None, **overrides: Any) -> config_mod.Config:
    try:
        return config_mod.load(config_file, **overrides)
    except DynodError as exc:
        raise click.UsageError(str(exc)) from exc


@click.group()
def cli() -> None:
    """dynod: a self-hosted Heroku runtime for your own Linux machines."""


@cli.command()
@_options
def serve(config_file: Path | None, **overrides: Any) -> None:
    """Run the daemon in the foreground until SIGTERM or SIGINT.

    Stopping the daemon leaves dynos and the router running; the next
    `dynod serve` with the same state dir and instance adopts them.
    """
    from dynod.daemon.daemon import Daemon

    config = _load(config_file, **overrides)
    level = getattr(logging, config.log_level.upper())
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    try:
        asyncio.run(Daemon(config).run())
    except DynodError as exc:
        click.echo(f"dynod: {exc}", err=True)
        sys.exit(1)


@cli.command()
@_options
def teardown(config_file: Path | None, **overrides: Any) -> None:
    """Stop every dyno and the router of an instance and remove what it made.

    Kernel objects (cgroups, bridge, veths) and firewall chains go; the state
    dir (apps, releases, slugs, logs) stays.  Run it with the same options as
    `dynod serve`, after the daemon has stopped.
    """
    from dynod.daemon.daemon import teardown as run_teardown

    asyncio.run(run_teardown(_load(config_file, **overrides)))


@cli.command()
def openapi() -> None:
    """Print the OpenAPI description of the API (JSON).

    The same document is served at GET /openapi.json and kept in the repository
    as dynod/api/openapi.json.
    """
    import json
    from typing import cast

    from dynod.api.openapi import describe
    from dynod.api.server import Api, make_app

    click.echo(json.dumps(describe(make_app(cast(Api, None))), indent=2))


def main() -> None:
    cli()
