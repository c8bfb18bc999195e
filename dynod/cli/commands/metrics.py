"""``metrics``: the app's request figures from its router lines."""

from __future__ import annotations

import click

from dynod.cli.base import Session, command
from dynod.cli.output import render_pairs


def _ms(value: int | None) -> str:
    return "-" if value is None else f"{value} ms"


@command("metrics")
@click.option(
    "-w",
    "--window",
    type=click.IntRange(1, 300),
    default=60,
    show_default=True,
    help="Seconds to look back.",
)
def metrics(s: Session, window: int) -> None:
    """Show requests, status classes and p50/p95/p99 service time.

    \b
    Example:
      $ dynoctl metrics -a hello
      === hello Metrics (last 60 s)
      Requests:     1200 (20.0/s)
      Statuses:     2xx 1190, 5xx 10
      Errors:       H12 10
      Service p50:  12 ms
      Service p95:  40 ms
      Service p99:  95 ms
    """
    figures = s.client.request("GET", s.path("metrics"), params={"window": window})
    if s.out.as_json:
        s.out.json(figures)
        return
    service = figures["service_ms"]
    statuses = ", ".join(f"{k} {v}" for k, v in figures["statuses"].items())
    errors = ", ".join(f"{k} {v}" for k, v in figures["errors"].items())
    s.out.heading(f"{s.app} Metrics (last {figures['window_seconds']} s)")
    s.out.lines(
        render_pairs(
            [
                (
                    "Requests",
                    f"{figures['requests']} ({figures['requests_per_second']:.1f}/s)",
                ),
                ("Statuses", statuses or "-"),
                ("Errors", errors or "-"),
                ("Service p50", _ms(service["p50"])),
                ("Service p95", _ms(service["p95"])),
                ("Service p99", _ms(service["p99"])),
            ]
        )
    )


COMMANDS = [metrics]
