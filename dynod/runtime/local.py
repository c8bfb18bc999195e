"""The local agent: dynos on this host, driven from dynod's event loop.

Start, step by step: allocate an address and veth name, create the dyno's
cgroups with its limits, and ask the spawner to launch it
(:mod:`dynod.runtime.launcher`); the spawner answers with the dyno's PID 1 and
the read ends of its output pipes, which are read here line by line.

Exit: the spawner reaps PID 1 and reports its status; the agent kills what is
left in the cgroups, drains the pipes, reads the OOM counter, removes cgroups
and veth, tells the spawner to forget the dyno and only then calls
``listener.on_exit``.  Nothing of a dyno is mounted on the host: its mounts
live and die with its mount namespace.

Restart: :meth:`LocalAgent.close` leaves spawner and dynos running; the next
agent's :meth:`LocalAgent.open` reconnects, adopts every dyno the spawner still
has (finishing those that exited meanwhile, with their real status) and removes
cgroups and veths that belong to no dyno.

Spawner death: the agent starts a new spawner at once and watches the dead
one's dynos through pidfds (:mod:`dynod.runtime.orphans`); an agent that opens
after both died adopts every live dyno from its cgroup and on-disk record
instead of killing it.  The exit status of such a dyno is unknown (None).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from dynod.config import Config
from dynod.errors import CgroupError, Conflict, NotFound, RuntimeFailure
from dynod.runtime.agent import AgentListener, DynoExit, DynoHandle, DynoStats
from dynod.runtime.cgroups import Cgroups, open_cgroups
from dynod.runtime.network import AddressPool, DynoNetwork, veth_name
from dynod.runtime.orphans import RecordFiles, reopen_output, watch_exit
from dynod.runtime.output import OutputReader
from dynod.runtime.plan import LaunchPlan
from dynod.runtime.probe import connected, listening
from dynod.runtime.spawner import SCRATCH_NAME
from dynod.runtime.spawnerclient import SpawnerClient, connect_spawner
from dynod.runtime.spec import DynoSpec

log = structlog.get_logger("dynod.runtime")

# How long teardown waits for a dyno's processes to die after SIGKILL.
KILL_TIMEOUT = 5.0


@dataclass
class _Dyno:
    handle: DynoHandle
    veth: str | None
    exited: asyncio.Future[DynoExit]
    readers: list[OutputReader] = field(default_factory=list)
    finishing: bool = False
    # Its spawner died: the exit comes from a pidfd, without a status.
    orphan: bool = False


class LocalAgent:
    """The :class:`~dynod.runtime.agent.Agent` of this host; :meth:`open` it first."""

    def __init__(
        self, config: Config, listener: AgentListener, cgroups: Cgroups | None = None
    ) -> None:
        self.config = config
        self.listener = listener
        self.cgroups = cgroups or open_cgroups(config.instance)
        self.network = DynoNetwork(config.instance, config.dyno_subnet)
        self.pool = AddressPool(config.dyno_subnet)
        # Where the milliseconds of the last start went (phase -> monotonic time).
        self.last_start_marks: dict[str, float] = {}
        self._dynos: dict[str, _Dyno] = {}
        self._exits: dict[str, DynoExit] = {}
        # Exits reported before start() or open() had registered the dyno.
        self._early_exits: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._spawner: SpawnerClient | None = None
        self.files = RecordFiles(config.run_dir / "dynos")
        self._unwatch: dict[str, Callable[[], None]] = {}
        self._closing = False

    async def open(self) -> None:
        """Set up the bridge, reach the spawner, adopt its dynos, drop orphans."""
        self.config.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self.network.ensure_bridge()
        self._spawner = await self._connect()

        # Adopt every dyno the spawner still holds, exited ones included.
        for message, fds in await self._spawner.request("list"):
            if message["op"] == "dyno":
                self._register(message, fds)
                log.info("dyno adopted", dyno=message["name"], id=message["id"])

        # Live dynos of a spawner that died are adopted from their records.
        for dyno_id in self.cgroups.list():
            if dyno_id not in self._dynos:
                self._adopt_orphan(dyno_id)

        # Cgroups and veths of dynos that no longer exist are debris.
        for dyno_id in self.cgroups.list():
            if dyno_id not in self._dynos:
                self._kill_now(dyno_id)
                self.cgroups.remove(dyno_id)
        for dyno_id in set(self.files.ids()) - set(self._dynos):
            self.files.remove(dyno_id)
        live = {d.veth for d in self._dynos.values()}
        for link in await self.network.links():
            if link not in live:
                await self.network.delete_link(link)

    async def _connect(self) -> SpawnerClient:
        return await connect_spawner(
            self.config.instance, self.config.run_dir, self._on_exit, self._lost
        )

    def _lost(self) -> None:
        """The spawner died: watch its dynos by pid and start a new one."""
        if self._closing:
            return
        log.warning("spawner lost; starting a new one", dynos=len(self._dynos))
        self._spawner = None
        for dyno in self._dynos.values():
            if not dyno.finishing and not dyno.orphan:
                self._orphan(dyno)
        task = asyncio.get_running_loop().create_task(self._reconnect())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reconnect(self) -> None:
        # Starts fail with RuntimeFailure until the new spawner answers.
        self._spawner = await self._connect()

    def _adopt_orphan(self, dyno_id: str) -> None:
        """Adopt a dyno no spawner knows if its record's PID 1 still runs."""
        record = self.files.load(dyno_id)
        if record is None or record.get("pid") not in self.cgroups.procs(dyno_id):
            return
        dyno = self._register(record, reopen_output(int(record["pid"])))
        self._orphan(dyno)
        log.info("dyno adopted without spawner", dyno=record["name"], id=dyno_id)

    def _orphan(self, dyno: _Dyno) -> None:
        dyno_id = dyno.handle.dyno_id
        dyno.orphan = True
        self._unwatch[dyno_id] = watch_exit(
            dyno.handle.pid, lambda: self._on_exit(dyno_id, None)
        )

    @property
    def spawner_pid(self) -> int | None:
        """The pid of the spawner this agent talks to, while open."""
        return self._spawner.pid if self._spawner else None

    def _client(self) -> SpawnerClient:
        if self._spawner is None:
            raise RuntimeFailure("The agent is not open: call open() first.")
        return self._spawner

    def _register(self, message: dict[str, Any], fds: builtins.list[int]) -> _Dyno:
        """Watch a dyno the spawner reported (just started or adopted)."""
        loop = asyncio.get_running_loop()
        dyno_id = message["id"]
        attach = fds[0] if len(fds) == 1 else None
        handle = DynoHandle(
            dyno_id,
            message["app"],
            message["name"],
            message["pid"],
            message["ip"],
            message["started_at"],
            attach,
        )
        dyno = _Dyno(handle, message["veth"], loop.create_future())
        if len(fds) == 2:
            for stream, fd in zip(("stdout", "stderr"), fds, strict=True):
                dyno.readers.append(
                    OutputReader(loop, fd, self._emitter(dyno_id, stream))
                )
        self._dynos[dyno_id] = dyno
        if handle.ip:
            self.pool.reserve(handle.ip)
        status = message.get("status")
        if status is None:
            status = self._early_exits.pop(dyno_id, None)
        if status is not None:
            self._on_exit(dyno_id, status)
        else:
            self.files.save(message)
        return dyno

    def _emitter(self, dyno_id: str, stream: str) -> Any:
        def emit(line: bytes) -> None:
            self.listener.on_output(dyno_id, stream, line)

        return emit

    async def start(self, spec: DynoSpec) -> DynoHandle:
        if spec.dyno_id in self._dynos:
            raise Conflict(f"Dyno id {spec.dyno_id} is already running: use a new id.")
        spawner = self._client()

        # Address, veth name and cgroups come before the process.
        ip = self.pool.allocate()
        veth = veth_name(self.config.instance, self.config.dyno_subnet, ip)
        try:
            # An earlier dyno's ARP entry for the address must not outlive it.
            await self.network.forget_neighbour(ip)
            limit = spec.memory_limit_bytes or spec.size.memory_bytes
            self.cgroups.create(
                spec.dyno_id, dataclasses.replace(spec.size, memory_bytes=limit)
            )
            plan = LaunchPlan.from_spec(
                spec,
                [str(p) for p in self.cgroups.paths(spec.dyno_id)],
                address=f"{ip}/{self.config.dyno_subnet.prefixlen}",
                gateway=str(self.pool.gateway),
                veth=veth,
                bridge=self.network.bridge,
            )
            reply = await spawner.request("start", plan=plan.to_json())
            message, fds = reply[-1]
            if message["op"] != "started":
                raise RuntimeFailure(message.get("error", "The spawner refused."))
        except BaseException:
            # Leave nothing behind: the launcher already reaped what it forked.
            self.pool.release(ip)
            with contextlib.suppress(CgroupError):
                self._kill_now(spec.dyno_id)
                self.cgroups.remove(spec.dyno_id)
            await self.network.delete_link(veth)
            raise

        self.last_start_marks = message.get("marks", {})
        dyno = self._register(message, fds)
        log.info("dyno started", dyno=spec.name, id=spec.dyno_id, pid=dyno.handle.pid)
        return dyno.handle

    def _on_exit(self, dyno_id: str, status: int | None) -> None:
        """The spawner reaped a dyno's PID 1: tear it down in a task."""
        dyno = self._dynos.get(dyno_id)
        if dyno is None:
            if status is not None:
                self._early_exits[dyno_id] = status
            return
        if dyno.finishing:
            return
        dyno.finishing = True
        task = asyncio.get_running_loop().create_task(self._finish(dyno, status))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish(self, dyno: _Dyno, status: int | None) -> None:
        dyno_id = dyno.handle.dyno_id
        self._unwatch.pop(dyno_id, lambda: None)()

        # PID 1's death makes the kernel kill its namespace; be sure of it.
        await self._kill_and_wait(dyno_id)

        # Every writer is dead now, so the pipes end; keep their last lines.
        for reader in dyno.readers:
            reader.drain()

        # Read the OOM counter before the cgroup goes away.
        try:
            oom = self.cgroups.oom_kills(dyno_id) > 0
        except CgroupError:
            oom = False
        self.cgroups.remove(dyno_id)
        if dyno.veth:
            await self.network.delete_link(dyno.veth)
        if dyno.handle.ip:
            self.pool.release(dyno.handle.ip)
        if self._spawner is not None:
            with contextlib.suppress(RuntimeFailure):
                await self._spawner.request("forget", id=dyno_id)

        event = DynoExit(dyno_id, status, oom)
        self.files.remove(dyno_id)
        del self._dynos[dyno_id]
        self._exits[dyno_id] = event
        dyno.exited.set_result(event)
        log.info("dyno exited", dyno=dyno.handle.name, status=status, oom=oom)
        self.listener.on_exit(event)

    def _kill_now(self, dyno_id: str) -> None:
        if self.cgroups.procs(dyno_id):
            self.cgroups.kill_all(dyno_id, signal.SIGKILL)

    async def _kill_and_wait(self, dyno_id: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + KILL_TIMEOUT
        while self.cgroups.procs(dyno_id) and loop.time() < deadline:
            self.cgroups.kill_all(dyno_id, signal.SIGKILL)
            await asyncio.sleep(0.005)

    async def stop(self, dyno_id: str, timeout: float) -> bool:
        dyno = self._dynos.get(dyno_id)
        if dyno is None:
            return False
        self.cgroups.kill_all(dyno_id, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(dyno.exited), timeout)
            return False
        except TimeoutError:
            log.warning("dyno ignored SIGTERM; sending SIGKILL", dyno=dyno.handle.name)
        self.cgroups.kill_all(dyno_id, signal.SIGKILL)
        await dyno.exited
        return True

    async def wait(self, dyno_id: str) -> DynoExit:
        if dyno_id in self._exits:
            return self._exits[dyno_id]
        dyno = self._dynos.get(dyno_id)
        if dyno is None:
            raise NotFound(f"Dyno id {dyno_id} is unknown to this agent.")
        return await asyncio.shield(dyno.exited)

    async def kill(self, dyno_id: str) -> None:
        if dyno_id in self._dynos:
            self.cgroups.kill_all(dyno_id, signal.SIGKILL)

    async def list(self) -> builtins.list[DynoHandle]:
        return [d.handle for d in self._dynos.values()]

    async def is_listening(self, dyno_id: str, port: int) -> bool:
        dyno = self._dynos.get(dyno_id)
        return dyno is not None and listening(dyno.handle.pid, port)

    async def connections(self, dyno_id: str, port: int) -> int:
        dyno = self._dynos.get(dyno_id)
        return 0 if dyno is None else connected(dyno.handle.pid, port)

    async def stats(self, dyno_id: str) -> DynoStats:
        if dyno_id not in self._dynos:
            raise NotFound(f"Dyno id {dyno_id} is unknown to this agent.")
        usage, limit = self.cgroups.memory(dyno_id)
        return DynoStats(
            usage,
            limit,
            self.cgroups.pids_current(dyno_id),
            self.cgroups.cpu_seconds(dyno_id),
            self.cgroups.oom_kills(dyno_id),
        )

    async def close(self) -> None:
        """Stop watching; the spawner keeps every dyno and its output."""
        # A teardown under way is finished, not cut short halfway.
        self._closing = True
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for unwatch in self._unwatch.values():
            unwatch()
        self._unwatch.clear()
        for dyno in self._dynos.values():
            for reader in dyno.readers:
                reader.close()
        self._dynos.clear()
        if self._spawner is not None:
            self._spawner.close()
            self._spawner = None

    async def destroy(self) -> None:
        """Kill every dyno, stop the spawner, remove cgroups, links and run files."""
        spawner = self._client()
        self._closing = True
        for dyno_id in builtins.list(self._dynos):
            self.cgroups.kill_all(dyno_id, signal.SIGKILL)
        for dyno in builtins.list(self._dynos.values()):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(dyno.exited), KILL_TIMEOUT)
        await spawner.request("shutdown")
        await spawner.wait_gone()
        await self.close()
        self.cgroups.destroy()
        await self.network.destroy()
        shutil.rmtree(self.config.run_dir / SCRATCH_NAME, ignore_errors=True)
        shutil.rmtree(self.files.directory, ignore_errors=True)
        for name in ("spawner.sock", "spawner.log"):
            (self.config.run_dir / name).unlink(missing_ok=True)
