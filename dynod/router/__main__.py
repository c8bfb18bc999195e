"""``python -m dynod.router``: the command line dynod starts the router with.

::

    python -m dynod.router --instance NAME --run-dir DIR --bind ADDR \\
        --http-port PORT --workers N [timeouts...]

With ``--https-port`` the workers also serve HTTPS with the certificates in
``--cert-dir`` (default ``DIR/certs``).  Reads ``DIR/routes.json``, sends log
lines to ``DIR/logs.sock``, writes its pid to ``DIR/router.pid`` once every
worker is listening and removes it on exit.
Exit status: 0 after a clean stop, 1 when the router could not start (for
example the port is taken), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import structlog

from dynod.config import Config
from dynod.errors import UserInputError
from dynod.router.settings import RouterSettings
from dynod.router.supervisor import Supervisor
from dynod.router.tls import TlsOptions
from dynod.router.worker import run_worker

_TIMEOUTS = {
    "connect_timeout": "seconds per connection attempt to a dyno (H19)",
    "first_byte_timeout": "seconds from request sent to first response byte (H12)",
    "boot_wait": "seconds a request waits for a booting app (H20)",
    "drain_timeout": "seconds in-flight requests get on SIGTERM",
    "quarantine": "seconds a refusing dyno is avoided",
    "connect_budget": "seconds one request may spend connecting (H99)",
    "header_timeout": "seconds a client may take to send a request head",
    "idle_timeout": "seconds without a byte either way mid-request (H15/H28)",
    "table_poll": "seconds between looks at routes.json",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dynod.router", description=__doc__)
    p.add_argument("--instance", required=True, help="the dynod instance name")
    p.add_argument("--run-dir", required=True, type=Path)
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--http-port", required=True, type=int)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--https-port", type=int, default=0, help="0: no HTTPS")
    p.add_argument("--cert-dir", type=Path, help="default: RUN_DIR/certs")
    defaults = RouterSettings()
    p.add_argument(
        "--backlog-per-dyno",
        type=int,
        default=defaults.backlog_per_dyno,
        help="requests in flight per app, worker and web dyno before H11",
    )
    for name, text in _TIMEOUTS.items():
        flag = "--" + name.replace("_", "-")
        p.add_argument(flag, type=float, default=getattr(defaults, name), help=text)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.KeyValueRenderer(key_order=["event", "level"]),
        ],
    )
    try:
        Config(instance=args.instance).validate()
    except UserInputError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.workers < 1 or not 0 < args.http_port < 65536:
        print(
            f"Workers {args.workers} and port {args.http_port} must be at least 1 "
            "and 1-65535; fix the command line.",
            file=sys.stderr,
        )
        return 2
    settings = RouterSettings(
        backlog_per_dyno=args.backlog_per_dyno,
        **{name: getattr(args, name) for name in _TIMEOUTS},
    )

    def worker_main(ready_fd: int | None) -> int:
        tls = (
            TlsOptions(args.https_port, args.cert_dir or args.run_dir / "certs")
            if args.https_port
            else None
        )
        return run_worker(
            args.run_dir, args.bind, args.http_port, settings, ready_fd, tls
        )

    supervisor = Supervisor(
        worker_main, args.workers, args.run_dir / "router.pid", settings.drain_timeout
    )
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
