"""The daemon's life: start every part in order, serve, stop leaving dynos up.

Start-up order matters: state first, then the pieces that only read it (logs,
routes), then the agent (which adopts the dynos an earlier daemon left), the
firewall, the router, and the API last, so no request arrives before the daemon
can act on it.  Stopping undoes the same steps but leaves dynos and the router
running: the next daemon adopts them.  :func:`teardown` is the one path that
removes everything (uninstall, tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import signal
import uuid
from ipaddress import IPv4Address
from pathlib import Path

import structlog
from aiohttp import web

from dynod.api.server import Api, make_app
from dynod.build.builder import Builder
from dynod.build.slugs import SlugStore
from dynod.config import Config
from dynod.daemon.router_supervisor import RouterSupervisor, stop_router
from dynod.errors import NotFound
from dynod.firewall import Firewall, FirewallPlan
from dynod.logs.hub import LogHub
from dynod.logs.store import LogStore
from dynod.manager.manager import Manager
from dynod.manager.routes import RoutePublisher
from dynod.releases.service import Releases
from dynod.runtime.agent import DynoExit
from dynod.runtime.local import LocalAgent
from dynod.runtime.network import bridge_name
from dynod.runtime.stack import ensure_default_stack
from dynod.state.db import Store

log = structlog.get_logger("dynod.daemon")

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def firewall_plan(config: Config, stack_rootfs: Path | None = None) -> FirewallPlan:
    gateway = next(config.dyno_subnet.hosts())
    return FirewallPlan(
        instance=config.instance,
        bridge=bridge_name(config.instance),
        subnet=config.dyno_subnet,
        gateway=gateway,
        dns_servers=_resolvers(stack_rootfs) if stack_rootfs else (),
    )


def _resolvers(rootfs: Path) -> tuple[IPv4Address, ...]:
    """The IPv4 nameservers dynos are told to use (the stack's resolv.conf)."""
    found: list[IPv4Address] = []
    try:
        text = (rootfs / "etc" / "resolv.conf").read_text()
    except OSError:
        return ()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            with contextlib.suppress(ValueError):
                found.append(IPv4Address(parts[1]))
    return tuple(found)


def buildpacks_dir(config: Config) -> Path:
    return config.buildpacks_dir or PACKAGE_ROOT / "buildpacks"


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        c = self.config

        # Directories: the state dir holds secrets (config vars), so 0700.
        c.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(c.state_dir, 0o700)
        c.run_dir.mkdir(parents=True, exist_ok=True)

        # State, logs and routes: nothing here touches the kernel.
        store = Store(c.state_dir / "dynod.db")
        failed = store.fail_unfinished()
        if failed:
            log.warning("marked unfinished builds and releases failed", count=failed)
        hub = LogHub(LogStore(c.state_dir / "logs", c.log_history_bytes))
        routes = RoutePublisher(c.run_dir)
        slugs = SlugStore(c.state_dir / "slugs")
        stack = await asyncio.to_thread(
            ensure_default_stack, c.stacks_dir, lambda m: log.info(m)
        )

        async def slug_dir(digest: str, uid: int, gid: int) -> Path:
            return await asyncio.to_thread(slugs.unpacked, digest, uid, gid)

        manager = Manager(c, store, hub, routes, stack.rootfs, slug_dir)

        # The agent adopts what an earlier daemon left running.
        agent = LocalAgent(c, manager)
        await agent.open()
        manager.agent = agent
        firewall = Firewall(firewall_plan(c, stack.rootfs))
        await asyncio.to_thread(firewall.apply)
        await manager.adopt()

        builder = Builder(
            agent,
            work_dir=c.state_dir / "builds",
            cache_root=c.state_dir / "cache",
            buildpacks_dir=buildpacks_dir(c),
            slugs=slugs,
            new_dyno_id=lambda: str(uuid.uuid4()),
        )
        releases = Releases(c, store, manager, hub, builder, stack.rootfs)

        # Router: request lines come back per app name.
        def router_line(app_name: str, line: str) -> None:
            with contextlib.suppress(NotFound):
                hub.emit(store.app(app_name).id, "dynod", "router", line)

        router = RouterSupervisor(c, router_line)
        await router.start()
        await manager.reconcile_all()

        # The API last: from here on requests can arrive.
        runner = web.AppRunner(make_app(Api(c, store, manager, releases, hub)))
        await runner.setup()
        c.api_socket.unlink(missing_ok=True)
        site = web.UnixSite(runner, str(c.api_socket))
        await site.start()
        _restrict_socket(c.api_socket)
        if c.api_listen:
            # Token-protected (see dynod.api.auth); for remote dynoctl and heroku.
            host, _, port = c.api_listen.rpartition(":")
            await web.TCPSite(runner, host.strip("[]") or None, int(port)).start()
        log.info("dynod ready", api=str(c.api_socket), http_port=c.http_port)

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        await self._stopping.wait()

        # Stop serving; dynos, the router and the firewall stay for the next daemon.
        log.info("dynod stopping; dynos keep running")
        await runner.cleanup()
        await releases.close()
        await manager.close()
        await router.close()
        await agent.close()
        hub.close()
        store.close()

    def stop(self) -> None:
        self._stopping.set()


def _restrict_socket(path: Path) -> None:
    # Only root and the dynod group may drive dynod (PRODUCT §10).
    try:
        gid = grp.getgrnam("dynod").gr_gid
    except KeyError:
        gid = 0
    os.chown(path, 0, gid)
    os.chmod(path, 0o660)


async def teardown(config: Config) -> None:
    """Remove everything an instance made: dynos, router, firewall, kernel objects."""

    class _Quiet:
        def on_output(self, dyno_id: str, stream: str, line: bytes) -> None:
            pass

        def on_exit(self, event: DynoExit) -> None:
            pass

    await asyncio.to_thread(stop_router, config.run_dir, config.instance)
    agent = LocalAgent(config, _Quiet())
    await agent.open()
    await agent.destroy()
    await asyncio.to_thread(Firewall(firewall_plan(config)).remove)
    for name in ("api.sock", "logs.sock", "routes.json", "router.pid"):
        (config.run_dir / name).unlink(missing_ok=True)
