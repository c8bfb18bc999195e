"""One router worker: an event loop serving the shared port until told to stop.

Every worker opens its own listening socket with ``SO_REUSEPORT``, so the kernel
spreads new connections across workers and a worker that dies takes only its
own connections with it.  On SIGTERM a worker stops accepting, closes idle
keep-alive connections, lets requests in flight finish for up to
``drain_timeout`` seconds, cuts what is left, and returns.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import signal
import socket
from pathlib import Path

import structlog
import uvloop

from dynod.router.context import WorkerContext
from dynod.router.logline import LogSender
from dynod.router.proxy import ProxyConnection
from dynod.router.settings import RouterSettings
from dynod.router.tls import TlsListener, TlsOptions, front_door
from dynod.router.watcher import TableWatcher

log = structlog.get_logger("dynod.router")

# Exit status of a worker that could not listen: retrying will not help.
EXIT_CANNOT_LISTEN = 3
_HOUSEKEEPING_INTERVAL = 1.0


def listen_socket(bind: str, port: int) -> socket.socket:
    """A listening TCP socket on ``bind:port`` that shares the port with peers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((bind, port))
        sock.listen(4096)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def run_worker(
    run_dir: Path,
    bind: str,
    port: int,
    settings: RouterSettings,
    ready_fd: int | None = None,
    tls: TlsOptions | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT; returns the process exit status.

    ``ready_fd``, if given, gets one byte once the worker is listening and is
    then closed.
    """
    # Forked workers share the parent's PRNG state; request ids must not repeat.
    random.seed()
    # Objects from startup live as long as the worker: keep them out of every
    # collection, and collect the short-lived per-request ones less often.
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)
    try:
        sock = listen_socket(bind, port)
        tls_sock = listen_socket(bind, tls.port) if tls is not None else None
    except OSError as exc:
        log.error("cannot listen", bind=bind, port=port, error=str(exc))
        return EXIT_CANNOT_LISTEN
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(sock, run_dir, port, settings, ready_fd, tls, tls_sock))
    return 0


async def _serve(
    sock: socket.socket,
    run_dir: Path,
    port: int,
    settings: RouterSettings,
    ready_fd: int | None,
    tls: TlsOptions | None = None,
    tls_sock: socket.socket | None = None,
) -> None:
    loop = asyncio.get_running_loop()

    # Signals only record the wish to stop; the drain below acts on it.
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    # Load the table before the first connection is accepted.
    logs = LogSender(str(run_dir / "logs.sock"), loop)
    ctx = WorkerContext(settings, logs, port)
    watcher = TableWatcher(run_dir / "routes.json", ctx.swap_table, settings.table_poll)
    watcher.start()
    server = await loop.create_server(lambda: ProxyConnection(ctx), sock=sock)
    # HTTPS with SNI, and ACME challenges answered before routing.
    ctx.front = front_door(run_dir / "acme-challenge")
    https = TlsListener(tls, ctx) if tls is not None else None
    if https is not None and tls_sock is not None:
        await https.start(tls_sock)
    housekeeping = loop.create_task(_housekeeping(ctx))
    deadlines = loop.create_task(_first_byte_deadlines(ctx))
    if ready_fd is not None:
        os.write(ready_fd, b".")
        os.close(ready_fd)
    log.info("router worker listening", pid=os.getpid(), port=port)

    await stop.wait()

    # Stop accepting and close connections that are between requests.
    ctx.draining = True
    server.close()
    if https is not None:
        https.close()
    for conn in list(ctx.connections):
        if conn.idle:
            conn.close()

    # Requests in flight get the drain timeout; connections close as they end.
    deadline = loop.time() + settings.drain_timeout
    while ctx.connections and loop.time() < deadline:
        await asyncio.sleep(0.02)
    if ctx.connections:
        log.warning("cutting requests still in flight", count=len(ctx.connections))
    for conn in list(ctx.connections):
        conn.abort()

    # Release everything else the worker holds.
    housekeeping.cancel()
    deadlines.cancel()
    watcher.stop()
    ctx.pool.close_all()
    logs.close()
    await server.wait_closed()


async def _first_byte_deadlines(ctx: WorkerContext) -> None:
    """Enforce the first-byte timeout to within an eighth of its length."""
    interval = min(0.25, ctx.settings.first_byte_timeout / 8)
    while True:
        await asyncio.sleep(interval)
        ctx.expire_first_byte()


async def _housekeeping(ctx: WorkerContext) -> None:
    """Close idle client connections and stale pooled dyno connections."""
    settings = ctx.settings
    while True:
        await asyncio.sleep(_HOUSEKEEPING_INTERVAL)
        now = ctx.loop.time()
        ctx.pool.sweep(now - settings.upstream_idle_timeout)
        limit = now - settings.client_idle_timeout
        # A head still arriving after the header timeout is a slow client (or
        # an attack holding connections open): it gets no more time.
        head_limit = now - settings.header_timeout
        idle_limit = now - settings.idle_timeout
        for conn in list(ctx.connections):
            conn.check_timeouts(idle_limit, head_limit, limit)
