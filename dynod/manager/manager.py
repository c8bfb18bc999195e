"""The dyno manager: makes the running dynos match each app's formation.

Desired state is the app's current release and its formation (process type ×
quantity × size); actual state is the dynos the agent runs.  :meth:`reconcile`
converges the two after every change (deploy, config change, rollback, scale,
restart) and after every disturbance (a crash, a daemon restart).  The manager
never touches the kernel: it asks its :class:`~dynod.runtime.agent.Agent`.

Rollouts start new web dynos first (the ``preboot`` feature, on by default):
the old dyno leaves the route table only once its replacement is up (listens
on ``$PORT`` and, if the app has a ``health_path``, answers it through the
router), every router worker has loaded the table without it, and the
requests in flight on it have finished (at most :data:`DRAIN_TIMEOUT`); only
then does it get SIGTERM.  A replacement that crashes instead leaves the old
dyno serving.  Other process types (and web with preboot off) start the new
dyno as the old one gets SIGTERM, all at once or ``worker_surge`` at a time.
Releases, ``ps:restart`` and daily cycling all take this one path.

Every timer (crash back-off, boot timeout, stop grace, cycling, one-off
time-to-live, the memory check) runs on :attr:`Manager.clock`, which tests
replace with :class:`~dynod.manager.clock.FakeClock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import structlog

from dynod.config import Config
from dynod.errors import Conflict, DynodError, NotFound
from dynod.logs.hub import LogHub
from dynod.manager import health, memory
from dynod.manager.clock import Clock, LoopClock, Timer
from dynod.manager.dynos import Dyno, DynoRecords
from dynod.manager.routes import AppRoute, Backend, RoutePublisher
from dynod.manager.states import (
    BACKOFF_RESET,
    CYCLE_BASE,
    CYCLE_JITTER,
    ONE_OFF_TTL_MAX,
    DynoState,
    backoff_delay,
    check_transition,
)
from dynod.router.table import valid_page_url
from dynod.runtime.agent import Agent, DynoExit, DynoHandle
from dynod.runtime.spec import DEFAULT_SIZE, MB, DynoKind, DynoSpec, Size
from dynod.state import features
from dynod.state.db import Store
from dynod.state.domains import hosts_by_app
from dynod.state.records import App, AppSettings, Release

log = structlog.get_logger("dynod.manager")

# How often a starting web dyno is checked for a listener on $PORT.
BOOT_POLL = 0.02
# How often a listening web dyno is asked its health path until it passes.
HEALTH_POLL = 0.25
# How often a web dyno kept serving for a crashed successor looks again.
SUCCESSOR_POLL = 0.5
# Lines per dyno kept from before adoption: what a full log pipe holds.
UNCLAIMED_LINES = 20_000
# A web dyno out of the route table is sent SIGTERM once no request is in
# flight on it: looked at after DRAIN_GRACE (connections the router was
# opening as the table changed have landed), then every DRAIN_POLL, for at
# most DRAIN_TIMEOUT (Heroku's 30 s request timeout; a WebSocket or a longer
# stream is cut then).
DRAIN_GRACE = 0.05
DRAIN_POLL = 0.05
DRAIN_TIMEOUT = 30.0
# The agent's own SIGKILL deadline trails the manager's stop grace by this much:
# it only acts if the manager's timer could not.
STOP_BACKSTOP = 5.0

SlugDirFn = Callable[[str, int, int], Awaitable[Path]]


class Manager:
    def __init__(
        self,
        config: Config,
        store: Store,
        hub: LogHub,
        routes: RoutePublisher,
        stack_dir: Path,
        slug_dir: SlugDirFn,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.hub = hub
        self.routes = routes
        self.stack_dir = stack_dir
        self._slug_dir = slug_dir
        self.clock: Clock = clock or LoopClock()
        self.agent: Agent | None = None
        self.records = DynoRecords(config.state_dir / "dynos")
        self.dynos: dict[str, Dyno] = {}
        self._crashes: dict[tuple[str, str], int] = {}
        self._restart_at: dict[tuple[str, str], Timer] = {}
        # Per dyno id: its cycling or time-to-live timer.
        self._timers: dict[str, Timer] = {}
        # Per dyno id: the cgroup's OOM kill count at the last memory check.
        self._oom_seen: dict[str, int] = {}
        self._r15_logged: set[str] = set()
        self._memory_task: asyncio.Task[None] | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._exited: dict[str, asyncio.Event] = {}
        # Until adopt() has run: lines of dynos the agent reads but this
        # manager does not know yet, kept for adopt() to claim.
        self._unclaimed: dict[str, list[bytes]] | None = {}
        # Told of every dyno that is gone for good (the slug collector listens).
        self.on_dyno_gone: Callable[[Dyno], None] = lambda dyno: None
        # Asks a booting web dyno its health path (tests may answer instead).
        self.check_status: Callable[[health.Check], Awaitable[int | None]] = (
            health.status_of
        )

    # The agent's listener

    def on_output(self, dyno_id: str, stream: str, line: bytes) -> None:
        # The hot path of every log line: the hub batches, formats and splits.
        dyno = self.dynos.get(dyno_id)
        if dyno is not None:
            self.hub.emit_output(dyno_id, dyno.app_id, dyno.name, line)
        elif self._unclaimed is not None:
            # What an adopted dyno wrote while no daemon read: its pipe's
            # backlog comes in as soon as the agent opens, before adopt().
            kept = self._unclaimed.setdefault(dyno_id, [])
            if len(kept) < UNCLAIMED_LINES:
                kept.append(line)

    def on_exit(self, event: DynoExit) -> None:
        dyno = self.dynos.get(event.dyno_id)
        self.records.remove(event.dyno_id)
        timer = self._timers.pop(event.dyno_id, None)
        if timer is not None:
            timer.cancel()
        self._oom_seen.pop(event.dyno_id, None)
        reported = event.dyno_id in self._r15_logged
        self._r15_logged.discard(event.dyno_id)
        if dyno is None:
            return
        # The memory check logs R15 itself when it finds the kill first.
        if event.oom_killed and not reported:
            self._event(dyno, "Error R15 (Memory quota vastly exceeded)")
        status = "unknown" if event.status is None else str(event.status)
        self._event(dyno, f"Process exited with status {status}")
        crashed = not dyno.stopping and dyno.kind is DynoKind.FORMATION
        self._set_state(dyno, DynoState.CRASHED if crashed else DynoState.DOWN)
        done = self._exited.pop(dyno.dyno_id, None)
        if done is not None:
            done.set()
        if crashed and not dyno.replaced:
            # A long healthy run earns a fresh back-off count.
            if self.clock.time() - dyno.created_at >= BACKOFF_RESET:
                self._crashes.pop((dyno.app_id, dyno.name), None)
            self._schedule_restart(dyno)
        elif not (dyno.attached and not dyno.client_attached):
            del self.dynos[dyno.dyno_id]
            self.on_dyno_gone(dyno)
        self.publish_routes()

    # Adoption

    async def adopt(self) -> None:
        """Take over the dynos a previous daemon left running, then watch them.

        A dyno with no record is not ours to guess about and is killed.  Web
        dynos count as up only if they still listen on ``$PORT``.  Attached
        one-offs lost their client with the old daemon and the release phase
        its waiter, so both are ended; detached one-offs keep running until
        their time-to-live.  Timers restart from each dyno's start time.
        """
        assert self.agent is not None
        unclaimed = self._unclaimed if self._unclaimed is not None else {}
        for handle in await self.agent.list():
            record = self.records.load(handle.dyno_id)
            if record is None:
                log.warning("killing unknown dyno", dyno_id=handle.dyno_id)
                await self.agent.kill(handle.dyno_id)
                continue
            dyno = _adopted(record, handle, self.clock.time())
            self.dynos[dyno.dyno_id] = dyno
            for line in unclaimed.pop(dyno.dyno_id, ()):
                self.hub.emit_output(dyno.dyno_id, dyno.app_id, dyno.name, line)
            if dyno.stopping:
                await self.agent.kill(dyno.dyno_id)
                continue

            # Resume watching: readiness, OOM counter, cycling or time-to-live.
            if (
                dyno.is_web
                and dyno.port is not None
                and not await self.agent.is_listening(dyno.dyno_id, dyno.port)
            ):
                dyno.state = DynoState.STARTING
                settings = self._settings(dyno.app_name)
                timeout = settings.boot_timeout
                left = max(0.0, dyno.created_at + timeout - self.clock.time())
                self._spawn(self._watch_boot(dyno, settings, left))
            with contextlib.suppress(DynodError):
                stats = await self.agent.stats(dyno.dyno_id)
                self._oom_seen[dyno.dyno_id] = stats.oom_kills
            expires = record.get("expires_at")
            self._schedule_end(dyno, None if expires is None else float(str(expires)))
        for dyno_id in set(self.records.ids()) - set(self.dynos):
            self.records.remove(dyno_id)
        self._unclaimed = None
        self.publish_routes()
        self.watch_memory()

    # Reconciliation

    async def reconcile(self, app_name: str) -> None:
        """Converge one app's dynos on its current release and formation."""
        async with self._lock(app_name):
            try:
                app = self.store.app(app_name)
            except NotFound:
                await self._stop_all(app_name)
                return
            release = self._current_release(app)
            desired = self._desired(app, release)
            live = [
                d
                for d in self.dynos.values()
                if d.app_id == app.id
                and d.kind is DynoKind.FORMATION
                and not d.stopping
                and not d.replaced
            ]

            # Stop what is no longer wanted: scaled down or gone from the Procfile.
            for dyno in live:
                if dyno.name not in desired:
                    self._spawn(self._stop(dyno, app))

            # Start what is missing; replace what runs an older release or size.
            outdated: list[tuple[Dyno, str]] = []
            for name, size in desired.items():
                assert release is not None
                current = next((d for d in live if d.name == name), None)
                if current is None:
                    await self._start_formation(app, release, name, size)
                elif current.release != release.version or current.size != size:
                    outdated.append((current, size))
            if outdated:
                assert release is not None
                await self._roll_all(app, release, outdated)
        self.publish_routes()

    async def reconcile_all(self) -> None:
        for app in self.store.apps():
            await self.reconcile(app.name)

    def _desired(self, app: App, release: Release | None) -> dict[str, str]:
        if release is None or release.slug_digest is None:
            return {}
        wanted: dict[str, str] = {}
        for entry in self.store.formation(app):
            if entry.type not in release.process_types or entry.type == "release":
                continue
            for i in range(1, entry.quantity + 1):
                wanted[f"{entry.type}.{i}"] = entry.size
        return wanted

    def _current_release(self, app: App) -> Release | None:
        if app.current_release is None:
            return None
        return self.store.release(app, str(app.current_release))

    async def _roll(self, old: Dyno, app: App, release: Release, size: str) -> None:
        """Replace one formation dyno by a fresh one of ``release`` (lock held)."""
        # A crashed dyno has nothing to hand over: start its successor now.
        if old.state is DynoState.CRASHED:
            self._restart_crashed(old)
            await self._start_formation(app, release, old.name, size)
            return
        old.replaced = True
        new = await self._start_formation(app, release, old.name, size)
        self._spawn(self._replace(old, new, app))

    async def _roll_all(
        self, app: App, release: Release, olds: list[tuple[Dyno, str]]
    ) -> None:
        """Replace each (dyno, size) of ``olds`` (lock held).

        Web dynos and crashed ones are replaced at once.  With the app's
        ``worker_surge`` above 0, each other type is handed to a paced
        rollout (:meth:`_paced_roll`); dynos it already holds are left to it.
        """
        surge = app.settings.worker_surge
        paced: dict[str, list[Dyno]] = {}
        for old, size in olds:
            if old.rolling:
                continue
            if surge and not old.is_web and old.state is not DynoState.CRASHED:
                old.rolling = True
                paced.setdefault(old.type, []).append(old)
            else:
                await self._roll(old, app, release, size)
        for group in paced.values():
            self._spawn(self._paced_roll(app.name, group, surge))

    async def _paced_roll(self, app_name: str, queue: list[Dyno], surge: int) -> None:
        """Replace ``queue`` (dynos of one type) ``surge`` at a time.

        Each batch starts its new dynos as the old ones get SIGTERM; the next
        batch waits until those have exited, so the type never runs more than
        ``surge`` dynos over its quantity.  Every batch takes the app's
        current release and formation: a dyno scaled away meanwhile is left
        to the reconciler, and a newer release is what the rest roll to.
        """
        try:
            while queue:
                batch, queue = queue[:surge], queue[surge:]
                leaving: list[asyncio.Event] = []
                async with self._lock(app_name):
                    for old in batch:
                        old.rolling = False
                    try:
                        app = self.store.app(app_name)
                    except NotFound:
                        return
                    release = self._current_release(app)
                    desired = self._desired(app, release)
                    for old in batch:
                        if (
                            release is None
                            or old.name not in desired
                            or old.dyno_id not in self.dynos
                            or old.stopping
                            or old.replaced
                        ):
                            continue
                        exited = self._exited.get(old.dyno_id)
                        try:
                            await self._roll(old, app, release, desired[old.name])
                        except DynodError as exc:
                            log.warning(
                                "rollout step failed", dyno=old.name, error=str(exc)
                            )
                        if exited is not None:
                            leaving.append(exited)
                self.publish_routes()
                for exited in leaving:
                    await exited.wait()
        finally:
            for old in queue:
                old.rolling = False

    async def _replace(self, old: Dyno, new: Dyno, app: App) -> None:
        # Start-new-first for web: the old dyno keeps serving until the new one
        # is up (or has failed to boot), then leaves the route table and stops.
        preboot = features.enabled(self.store, app.id, "preboot")
        if preboot and old.is_web and old.state is DynoState.UP:
            await self._await_successor(old)
            old.draining = True
            self.publish_routes()
            # Once every router worker serves a table without the old dyno, no
            # new request reaches it; those in flight are let finish.
            await self.routes.wait_acknowledged(self.routes.version)
            await self._drain(old)
        await self._stop(old, app)

    async def _drain(self, dyno: Dyno) -> None:
        """Return once no request is in flight on a web dyno out of the table.

        Router workers close their idle pooled connections to a dyno they no
        longer route to, and a busy one as soon as its response is done, so
        the established connections to the dyno's ``$PORT`` (counted by the
        kernel, in the dyno's network namespace) are its requests in flight.
        """
        assert self.agent is not None and dyno.port is not None
        await self.clock.sleep(DRAIN_GRACE)
        deadline = self.clock.monotonic() + DRAIN_TIMEOUT
        while await self.agent.connections(dyno.dyno_id, dyno.port):
            if self.clock.monotonic() >= deadline:
                log.info("drain timed out", dyno=dyno.name, app=dyno.app_name)
                return
            await self.clock.sleep(DRAIN_POLL)

    async def _await_successor(self, old: Dyno) -> None:
        """Return once a dyno of ``old``'s name is up, or none is coming.

        A successor that crashes (it never bound, failed its health check or
        exited) leaves ``old`` serving while the crash restarts try again; a
        successor scaled away or an app destroyed ends the wait.  Between a
        crashed successor and the next there can be a moment with none at all
        (a rollout or restart forgets the crashed one before it starts the
        next), so only the formation says when none is coming.
        """
        key = (old.app_id, old.name)
        while not old.stopping and old.state is DynoState.UP:
            successors = [
                d
                for d in self.dynos.values()
                if d.app_id == old.app_id
                and d.name == old.name
                and d.kind is DynoKind.FORMATION
                and not (d is old or d.stopping or d.replaced)
            ]
            if any(d.state is DynoState.UP for d in successors):
                return
            starting = not successors and key not in self._restart_at
            if starting and not self._wanted(old):
                return
            booting = any(d.state is DynoState.STARTING for d in successors)
            await self.clock.sleep(BOOT_POLL if booting or starting else SUCCESSOR_POLL)

    def _wanted(self, dyno: Dyno) -> bool:
        """Whether the app's formation still has a dyno of ``dyno``'s name."""
        try:
            app = self.store.app(dyno.app_name)
        except NotFound:
            return False
        return dyno.name in self._desired(app, self._current_release(app))

    # Starting

    async def _start_formation(
        self, app: App, release: Release, name: str, size: str
    ) -> Dyno:
        ptype = name.split(".", 1)[0]
        command = release.process_types[ptype]
        key = (app.id, name)
        if key in self._restart_at:
            self._restart_at.pop(key).cancel()
        return await self._start(
            app, release, name, ptype, DynoKind.FORMATION, command, size, {}
        )

    async def _start(
        self,
        app: App,
        release: Release,
        name: str,
        ptype: str,
        kind: DynoKind,
        command: str,
        size_name: str,
        extra_env: dict[str, str],
        *,
        attach: bool = False,
        tty: bool = False,
        time_to_live: float | None = None,
    ) -> Dyno:
        assert self.agent is not None and release.slug_digest is not None
        size = self._size(size_name)
        uid = self.config.app_uid(app.uid_index)
        now = self.clock.time()
        dyno = Dyno(
            dyno_id=str(uuid.uuid4()),
            app_id=app.id,
            app_name=app.name,
            name=name,
            type=ptype,
            kind=kind,
            release=release.version,
            command=command,
            size=size_name,
            port=random.randrange(3000, 61000) if ptype == "web" else None,
            state=DynoState.STARTING,
            state_since=now,
            created_at=now,
            attached=attach,
        )
        # PATH is the stack's unless a config var sets it; buildpacks extend it
        # through .profile.d, which the launcher sources.
        env = {
            **release.config,
            **extra_env,
            "DYNO": name,
            "HOME": "/app",
            "DYNOD_APP_NAME": app.name,
            "DYNOD_RELEASE_VERSION": f"v{release.version}",
            "DYNOD_DYNO_ID": dyno.dyno_id,
            "MEMORY_AVAILABLE": str(size.memory_bytes // MB),
        }
        if dyno.port is not None:
            env["PORT"] = str(dyno.port)
        spec = DynoSpec(
            dyno_id=dyno.dyno_id,
            app=app.name,
            name=name,
            kind=kind,
            argv=("/bin/bash", "-c", command),
            env=env,
            size=size,
            uid=uid,
            gid=uid,
            stack_dir=self.stack_dir,
            slug_dir=await self._slug_dir(release.slug_digest, uid, uid),
            port=dyno.port,
            tty=tty,
            stdin=attach,
            release_version=release.version,
            memory_limit_bytes=memory.hard_limit(size.memory_bytes),
        )
        if kind is DynoKind.ONE_OFF and time_to_live is not None:
            dyno.expires_at = now + min(time_to_live, ONE_OFF_TTL_MAX)
        self.dynos[dyno.dyno_id] = dyno
        self._exited[dyno.dyno_id] = asyncio.Event()
        self._event(dyno, f"Starting process with command `{command}`")
        self.records.save(dyno)
        try:
            dyno.handle = await self.agent.start(spec)
        except DynodError as exc:
            self.records.remove(dyno.dyno_id)
            self._event(dyno, f"Error R99 (Platform error) -> {exc}")
            self._set_state(dyno, DynoState.CRASHED)
            self._exited.pop(dyno.dyno_id).set()
            if kind is DynoKind.FORMATION:
                self._schedule_restart(dyno)
            else:
                del self.dynos[dyno.dyno_id]
            raise
        self._oom_seen[dyno.dyno_id] = 0
        self._schedule_end(dyno, dyno.expires_at)
        if dyno.is_web:
            settings = app.settings
            self._spawn(self._watch_boot(dyno, settings, settings.boot_timeout))
        else:
            self._set_state(dyno, DynoState.UP)
        return dyno

    async def _watch_boot(self, dyno: Dyno, settings: AppSettings, left: float) -> None:
        """Mark a web dyno up once it listens on $PORT and, if the app has a
        health path, answers it through the router; R10 after ``left`` seconds.
        """
        assert self.agent is not None and dyno.port is not None
        deadline = self.clock.monotonic() + left
        next_check = 0.0
        while dyno.state is DynoState.STARTING and not dyno.stopping:
            now = self.clock.monotonic()
            if not dyno.listening and await self.agent.is_listening(
                dyno.dyno_id, dyno.port
            ):
                if not settings.health_path:
                    self._set_state(dyno, DynoState.UP)
                    self.publish_routes()
                    return
                # Reachable for checks only, once every router worker knows.
                dyno.listening = True
                self.publish_routes()
                await self.routes.wait_acknowledged(self.routes.version)
            elif dyno.listening and now >= next_check:
                status = await self.check_status(self._check_of(dyno, settings))
                if health.passed(status) and dyno.state is DynoState.STARTING:
                    self._set_state(dyno, DynoState.UP)
                    self.publish_routes()
                    return
                dyno.last_check = status
                next_check = self.clock.monotonic() + HEALTH_POLL
            if self.clock.monotonic() >= deadline:
                self._boot_timed_out(dyno, settings)
                await self.agent.kill(dyno.dyno_id)
                return
            await self.clock.sleep(BOOT_POLL)

    def _boot_timed_out(self, dyno: Dyno, settings: AppSettings) -> None:
        timeout = f"{settings.boot_timeout:g} seconds of launch"
        if not dyno.listening:
            why = f"Web process failed to bind to $PORT within {timeout}"
        else:
            got = "no response" if dyno.last_check is None else dyno.last_check
            why = (
                f"Web process did not answer GET {settings.health_path} with a "
                f"2xx or 3xx within {timeout} (last answer: {got})"
            )
        self._event(dyno, f"Error R10 (Boot timeout) -> {why}")
        self._event(dyno, "Stopping process with SIGKILL")

    def _check_of(self, dyno: Dyno, settings: AppSettings) -> health.Check:
        bind = self.config.router_bind
        return health.Check(
            router_addr="127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind,
            router_port=self.config.http_port,
            host=f"{dyno.app_name}.{self.config.router_domain}",
            path=settings.health_path,
            token=self.routes.check_token,
            dyno=dyno.name,
        )

    # Stopping

    async def _stop(self, dyno: Dyno, app: App | None) -> None:
        assert self.agent is not None
        if dyno.state is DynoState.CRASHED:
            self._forget_crashed(dyno)
            return
        dyno.stopping = True
        dyno.draining = True
        self.publish_routes()
        if dyno.is_web:
            await self.routes.wait_acknowledged(self.routes.version)
        timeout = app.settings.stop_timeout if app else 30.0
        agent = self.agent
        escalated = False

        def escalate() -> None:
            # The grace is over: R12, then SIGKILL to whatever is left.
            nonlocal escalated
            escalated = True
            self._event(
                dyno,
                "Error R12 (Exit timeout) -> Process failed to exit within "
                f"{timeout:g} seconds of SIGTERM",
            )
            self._event(dyno, "Stopping process with SIGKILL")
            self._spawn(agent.kill(dyno.dyno_id))

        self._event(dyno, "Stopping all processes with SIGTERM")
        grace = self.clock.call_later(timeout, escalate)
        try:
            killed = await agent.stop(dyno.dyno_id, timeout + STOP_BACKSTOP)
        finally:
            grace.cancel()
        if killed and not escalated:
            self._event(dyno, "Stopping process with SIGKILL")
        exited = self._exited.get(dyno.dyno_id)
        if exited is not None:
            await exited.wait()

    async def _stop_all(self, app_name: str) -> None:
        dynos = [d for d in self.dynos.values() if d.app_name == app_name]
        await asyncio.gather(*(self._stop(d, None) for d in dynos))

    async def destroy_app(self, app: App) -> None:
        async with self._lock(app.name):
            for key in [k for k in self._restart_at if k[0] == app.id]:
                self._restart_at.pop(key).cancel()
            dynos = [d for d in self.dynos.values() if d.app_id == app.id]
            await asyncio.gather(*(self._stop(d, app) for d in dynos))
        self.publish_routes()

    # Restarts and crashes

    def _schedule_restart(self, dyno: Dyno) -> None:
        key = (dyno.app_id, dyno.name)
        crashes = self._crashes.get(key, 0) + 1
        self._crashes[key] = crashes
        delay = backoff_delay(crashes)
        dyno.restart_at = self.clock.time() + delay

        def fire() -> None:
            self._restart_at.pop(key, None)
            self._restart_crashed(dyno)
            self._spawn(self.reconcile(dyno.app_name))

        self._restart_at[key] = self.clock.call_later(delay, fire)

    def _restart_crashed(self, dyno: Dyno) -> None:
        # Its successor starts next, under the same name: Heroku logs the name's
        # way back from crashed before the new process's first line.
        self._event(
            dyno, f"State changed from {DynoState.CRASHED} to {DynoState.STARTING}"
        )
        self._forget_crashed(dyno)

    def _forget_crashed(self, dyno: Dyno) -> None:
        self.dynos.pop(dyno.dyno_id, None)
        handle = self._restart_at.pop((dyno.app_id, dyno.name), None)
        if handle is not None:
            handle.cancel()

    def reset_backoff(self, app: App) -> None:
        for key in [k for k in self._crashes if k[0] == app.id]:
            del self._crashes[key]

    async def restart(self, app: App, target: str | None = None) -> list[str]:
        """Replace the app's dynos (all, one type, or one dyno) with fresh ones."""
        self.reset_backoff(app)
        dynos = [
            d
            for d in self.dynos.values()
            if d.app_id == app.id
            and d.kind is DynoKind.FORMATION
            and not d.stopping
            and not d.replaced
            and (target is None or target in (d.name, d.type))
        ]
        if target is not None and not dynos:
            raise NotFound(
                f"No dyno or process type {target} is running in {app.name}."
            )
        release = self._current_release(app)
        async with self._lock(app.name):
            # A rollout that took the lock first may have replaced some.
            olds = [(d, d.size) for d in dynos if not d.replaced and not d.stopping]
            if release is not None:
                await self._roll_all(app, release, olds)
        self.publish_routes()
        return [d.name for d in dynos]

    # Cycling and time-to-live

    def _schedule_end(self, dyno: Dyno, expires_at: float | None) -> None:
        """Arm the dyno's cycling (formation) or time-to-live (one-off) timer."""
        if dyno.kind is DynoKind.FORMATION:
            due = dyno.created_at + CYCLE_BASE + random.uniform(0.0, CYCLE_JITTER)
        elif expires_at is not None:
            dyno.expires_at = expires_at
            due = expires_at
        else:
            return

        def fire() -> None:
            self._timers.pop(dyno.dyno_id, None)
            if dyno.kind is DynoKind.FORMATION:
                self._spawn(self._cycle(dyno))
            elif not dyno.stopping:
                self._spawn(self._stop(dyno, None))

        delay = max(0.0, due - self.clock.time())
        self._timers[dyno.dyno_id] = self.clock.call_later(delay, fire)

    async def _cycle(self, dyno: Dyno) -> None:
        """Daily cycling: replace a dyno through the no-downtime rollout path."""
        async with self._lock(dyno.app_name):
            if dyno.dyno_id not in self.dynos or dyno.stopping or dyno.replaced:
                return
            try:
                app = self.store.app(dyno.app_name)
            except NotFound:
                return
            release = self._current_release(app)
            if release is None or release.slug_digest is None:
                return
            self._event(dyno, "Cycling")
            await self._roll(dyno, app, release, dyno.size)
        self.publish_routes()

    # Memory

    def watch_memory(self) -> None:
        """Start the periodic memory check (R14, R15); idempotent."""
        if self._memory_task is None or self._memory_task.done():
            self._memory_task = asyncio.ensure_future(self._watch_memory())

    async def _watch_memory(self) -> None:
        while True:
            await self.clock.sleep(memory.CHECK_INTERVAL)
            await self.check_memory()

    async def check_memory(self) -> None:
        """Look at every running dyno's memory once (see :mod:`.memory`)."""
        assert self.agent is not None
        for dyno in list(self.dynos.values()):
            if dyno.stopping or dyno.state not in (DynoState.STARTING, DynoState.UP):
                continue
            try:
                stats = await self.agent.stats(dyno.dyno_id)
            except DynodError:
                continue
            verdict = memory.judge(
                stats.memory_bytes,
                self._size(dyno.size).memory_bytes,
                stats.oom_kills,
                self._oom_seen.get(dyno.dyno_id, 0),
            )
            self._oom_seen[dyno.dyno_id] = stats.oom_kills
            for line in verdict.lines:
                self._event(dyno, line)
            if verdict.kill:
                self._r15_logged.add(dyno.dyno_id)
                await self.agent.kill(dyno.dyno_id)

    async def stop(self, app: App, target: str) -> list[str]:
        """Stop dynos by name or type; formation dynos come back (as on Heroku)."""
        dynos = [
            d
            for d in self.dynos.values()
            if d.app_id == app.id and not d.stopping and target in (d.name, d.type)
        ]
        if not dynos:
            raise NotFound(
                f"No dyno or process type {target} is running in {app.name}."
            )
        await asyncio.gather(*(self._stop(d, app) for d in dynos))
        await self.reconcile(app.name)
        return [d.name for d in dynos]

    async def kill(self, dyno: Dyno) -> None:
        """End a dyno at once with SIGKILL (a one-off whose client left)."""
        assert self.agent is not None
        dyno.stopping = True
        self._event(dyno, "Stopping process with SIGKILL")
        await self.agent.kill(dyno.dyno_id)

    # One-off dynos

    async def run(
        self,
        app: App,
        command: str,
        *,
        env: dict[str, str],
        size: str,
        attach: bool,
        tty: bool,
        time_to_live: float = ONE_OFF_TTL_MAX,
    ) -> Dyno:
        """Start a one-off ``run.NNNN``; it ends after ``time_to_live`` seconds."""
        release = self._current_release(app)
        if release is None or release.slug_digest is None:
            raise Conflict(
                f"{app.name} has no release to run: deploy it first with "
                "`dynoctl deploy`."
            )
        taken = {d.name for d in self.dynos.values() if d.app_id == app.id}
        name = ""
        while not name or name in taken:
            name = f"run.{secrets.randbelow(9000) + 1000}"
        return await self._start(
            app,
            release,
            name,
            "run",
            DynoKind.ONE_OFF,
            command,
            size,
            env,
            attach=attach,
            tty=tty,
            time_to_live=time_to_live,
        )

    async def run_release_phase(
        self, app: App, release: Release, output: Callable[[str], None]
    ) -> int | None:
        """Run the Procfile's ``release:`` command for a new release; its status.

        A command still running after ``release_timeout`` seconds is stopped
        like any one-off at the end of its time-to-live, and fails.
        """
        command = release.process_types["release"]
        timeout = self.config.release_timeout
        # Listen before starting, so not even the first line is missed.
        watcher = self.hub.subscribe(app.id, source="app", dyno="release.1")
        reader = asyncio.ensure_future(_forward(watcher.lines(), output))
        try:
            dyno = await self._start(
                app,
                release,
                "release.1",
                "release",
                DynoKind.ONE_OFF,
                command,
                "standard-1x",
                {},
                time_to_live=timeout,
            )
            status = await self.wait(dyno)
            if dyno.expires_at is not None and self.clock.time() >= dyno.expires_at:
                output(
                    f" !     Release command did not finish within {timeout:g} "
                    "seconds and was stopped."
                )
            return status
        finally:
            self.hub.unsubscribe(app.id, watcher)
            watcher.close()
            await reader

    async def wait(self, dyno: Dyno) -> int | None:
        assert self.agent is not None
        event = await self.agent.wait(dyno.dyno_id)
        exited = self._exited.get(dyno.dyno_id)
        if exited is not None:
            await exited.wait()
        return event.status

    # Views

    async def memory(self, dyno: Dyno) -> int | None:
        """The dyno's memory use from its cgroup, or None once it has exited."""
        assert self.agent is not None
        if dyno.handle is None or dyno.state not in (DynoState.STARTING, DynoState.UP):
            return None
        try:
            return (await self.agent.stats(dyno.dyno_id)).memory_bytes
        except DynodError:
            return None

    def app_dynos(self, app: App) -> list[Dyno]:
        """The app's dynos for ``ps``: a replaced one while it still serves."""
        found = [
            d
            for d in self.dynos.values()
            if d.app_id == app.id
            and (not d.replaced or (d.state is DynoState.UP and not d.draining))
        ]
        return sorted(found, key=_dyno_order)

    def detach(self, dyno: Dyno) -> None:
        """An attached one-off's client is done with it; forget it if it ended."""
        if dyno.state is DynoState.DOWN:
            self.dynos.pop(dyno.dyno_id, None)

    def find(self, app: App, name: str) -> Dyno:
        for dyno in self.dynos.values():
            if dyno.app_id == app.id and dyno.name == name and not dyno.stopping:
                return dyno
        raise NotFound(f"No dyno {name} is running in {app.name}.")

    # Helpers

    def _lock(self, app_name: str) -> asyncio.Lock:
        return self._locks.setdefault(app_name, asyncio.Lock())

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("manager task failed", exc_info=task.exception())

    def _event(self, dyno: Dyno, message: str) -> None:
        self.hub.emit(dyno.app_id, "dynod", dyno.name, message)

    def _set_state(self, dyno: Dyno, state: DynoState) -> None:
        check_transition(dyno.state, state)
        self._event(dyno, f"State changed from {dyno.state} to {state}")
        dyno.state = state
        dyno.state_since = self.clock.time()
        if state is not DynoState.CRASHED:
            dyno.restart_at = None

    def _size(self, name: str) -> Size:
        # A dyno adopted from a daemon that knew a size this one's settings
        # no longer have is judged as the default size.
        sizes = self.config.sizes
        return sizes.get(name) or sizes[DEFAULT_SIZE]

    def _settings(self, app_name: str) -> AppSettings:
        try:
            return self.store.app(app_name).settings
        except NotFound:
            return AppSettings()

    def publish_routes(self) -> None:
        table: dict[str, AppRoute] = {}
        # Custom domains (domains:add) are extra hosts of their app.
        custom = hosts_by_app(self.store)
        for app in self.store.apps():
            hosts = (
                f"{app.name}.{self.config.router_domain}",
                *custom.get(app.id, ()),
            )
            webs = [
                d
                for d in self.dynos.values()
                if d.app_id == app.id and d.is_web and not d.stopping
            ]
            up = [_backend(d) for d in webs if d.state is DynoState.UP]
            checked = [
                _backend(d)
                for d in webs
                if d.listening and d.state is DynoState.STARTING
            ]
            if app.current_release is None:
                state = "not-deployed"
            elif app.maintenance:
                state = "maintenance"
            elif up:
                state = "running"
            elif any(d.state is DynoState.STARTING for d in webs):
                state = "booting"
            elif webs:
                state = "crashed"
            else:
                state = "no-web"
            table[app.name] = AppRoute(
                hosts,
                state,
                tuple(b for b in up if b is not None),
                _pages(app),
                tuple(b for b in checked if b is not None),
            )
        self.routes.publish(table)

    async def close(self) -> None:
        """Stop background work; running dynos stay for the next daemon."""
        for handle in [*self._restart_at.values(), *self._timers.values()]:
            handle.cancel()
        self._restart_at.clear()
        self._timers.clear()
        if self._memory_task is not None:
            self._memory_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._memory_task
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _forward(lines: AsyncIterator[str], output: Callable[[str], None]) -> None:
    async for line in lines:
        output(line.split(": ", 1)[1] if ": " in line else line)


def _dyno_order(d: Dyno) -> tuple[str, int, int]:
    ptype, _, number = d.name.partition(".")
    return (ptype, int(number) if number.isdigit() else 0, d.release)


def _backend(dyno: Dyno) -> Backend | None:
    """Where the router reaches a web dyno; None when it must not."""
    handle = dyno.handle
    if dyno.draining or handle is None or handle.ip is None or dyno.port is None:
        return None
    return Backend(dyno.name, handle.ip, dyno.port)


def _adopted(record: dict[str, object], handle: DynoHandle, now: float) -> Dyno:
    """The manager's view of a running dyno, rebuilt from its on-disk record."""
    kind = DynoKind(record["kind"])
    attached = bool(record.get("attached"))
    return Dyno(
        dyno_id=handle.dyno_id,
        app_id=str(record["app_id"]),
        app_name=str(record["app_name"]),
        name=str(record["name"]),
        type=str(record["type"]),
        kind=kind,
        release=int(str(record["release"])),
        command=str(record["command"]),
        size=str(record["size"]),
        port=None if record["port"] is None else int(str(record["port"])),
        state=DynoState.UP,
        state_since=now,
        created_at=float(str(record["created_at"])),
        handle=handle,
        # An attached one-off lost its client, the release phase its waiter.
        stopping=kind is DynoKind.ONE_OFF
        and (attached or str(record["type"]) == "release"),
        attached=attached,
    )


# Config vars that name an app's own error and maintenance pages (as Heroku's).
PAGE_VARS = (("error", "ERROR_PAGE_URL"), ("maintenance", "MAINTENANCE_PAGE_URL"))


def _pages(app: App) -> tuple[tuple[str, str], ...]:
    # A URL the router would refuse is left out here: in the table it would
    # take the whole app off the router.
    return tuple(
        (kind, app.config[var])
        for kind, var in PAGE_VARS
        if var in app.config and valid_page_url(app.config[var])
    )
