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
import shutil
import signal
import uuid
from ipaddress import IPv4Address
from pathlib import Path

import structlog
from aiohttp import web

from dynod.api.drains import DRAINS
from dynod.api.edge import EDGE, Edge
from dynod.api.server import Api, make_app
from dynod.build.builder import Builder
from dynod.build.slugs import SlugStore
from dynod.certs.acme import AcmeIssuer
from dynod.certs.challenges import ChallengeTokens, challenge_dir
from dynod.certs.publish import CertPublisher, cert_dir
from dynod.certs.service import CertService
from dynod.config import Config
from dynod.daemon.router_supervisor import RouterSupervisor, stop_router
from dynod.errors import NotFound
from dynod.firewall import Firewall, FirewallPlan
from dynod.firewall.iptables import SYSCTL_RECORD
from dynod.firewall.webports import FirewalledRoutes, read_routes
from dynod.logs.drains import DrainService
from dynod.logs.hub import LogHub
from dynod.logs.store import LogStore
from dynod.manager.manager import Manager
from dynod.metrics.registry import Metrics
from dynod.releases.service import Releases
from dynod.runtime.agent import DynoExit
from dynod.runtime.local import LocalAgent
from dynod.runtime.network import bridge_name
from dynod.runtime.stack import ensure_default_stack
from dynod.state.db import Store
from dynod.state.drains import DrainRows

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
        hub = LogHub(
            LogStore(c.state_dir / "logs", c.log_history_bytes), c.log_rate_lines
        )
        # Drains resume from their persisted cursors: nothing logged while
        # dynod was down is lost for them.
        drains = DrainService(hub, DrainRows(store), c.drain_ca_file)
        drains.start()
        slugs = SlugStore(c.state_dir / "slugs", c.slug_max_bytes)
        stack = await asyncio.to_thread(
            ensure_default_stack, c.stacks_dir, lambda m: log.info(m)
        )
        # The firewall learns each web dyno before the router's table does.
        firewall = Firewall(firewall_plan(c, stack.rootfs), state_file=SYSCTL_RECORD)
        routes = FirewalledRoutes(c.run_dir, firewall)

        async def slug_dir(digest: str, uid: int, gid: int) -> Path:
            return await asyncio.to_thread(slugs.unpacked, digest, uid, gid)

        manager = Manager(c, store, hub, routes, stack.rootfs, slug_dir)

        # The agent adopts what an earlier daemon left running.
        agent = LocalAgent(c, manager)
        await agent.open()
        manager.agent = agent
        routed = read_routes(c.run_dir / "routes.json")
        await asyncio.to_thread(firewall.apply, routed)
        await manager.adopt()

        builder = Builder(
            agent,
            work_dir=c.state_dir / "builds",
            cache_root=c.state_dir / "cache",
            buildpacks_dir=buildpacks_dir(c),
            slugs=slugs,
            new_dyno_id=lambda: str(uuid.uuid4()),
        )
        releases = Releases(c, store, manager, hub, builder, slugs, stack.rootfs)
        # A dyno gone may have been the last to run on an old slug.
        manager.on_dyno_gone = lambda dyno: releases.collect_slugs_soon()

        # Certificates: the router's directory is complete before it starts.
        issuer = AcmeIssuer(
            c.acme_directory,
            c.state_dir / "acme",
            ChallengeTokens(c.run_dir),
            c.acme_ca_file,
        )
        certs = CertService(
            c,
            store,
            lambda app_id, message: hub.emit(app_id, "dynod", "acm", message),
            CertPublisher(c.run_dir),
            issuer,
        )
        certs.prepare(c.state_dir / "certs")
        metrics = Metrics()

        # Router: request lines come back per app name, and feed the metrics.
        def router_line(app_name: str, line: str) -> None:
            metrics.observe(app_name, line)
            with contextlib.suppress(NotFound):
                hub.emit(store.app(app_name).id, "dynod", "router", line)

        router = RouterSupervisor(c, router_line)
        await router.start()
        await manager.reconcile_all()
        releases.collect_slugs_soon()

        # The API last: from here on requests can arrive.
        api_app = make_app(Api(c, store, manager, releases, hub))
        api_app[DRAINS] = drains
        api_app[EDGE] = Edge(c, store, manager, hub, certs, metrics)
        certs.start()
        runner = web.AppRunner(api_app)
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
        # Live tails would hold the API's shutdown until they time out.
        hub.end_tails()
        await runner.cleanup()
        await certs.close()
        await releases.close()
        await manager.close()
        await router.close()
        await agent.close()
        await drains.close()
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
    firewall = Firewall(firewall_plan(config), state_file=SYSCTL_RECORD)
    await asyncio.to_thread(firewall.remove)
    for name in ("api.sock", "logs.sock", "routes.json", "router.pid"):
        (config.run_dir / name).unlink(missing_ok=True)
    for published in (cert_dir(config.run_dir), challenge_dir(config.run_dir)):
        shutil.rmtree(published, ignore_errors=True)
