"""Dynos on the real kernel: a real stack, a tiny slug, the local agent."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio

from dynod.config import Config
from dynod.runtime.agent import DynoExit
from dynod.runtime.local import LocalAgent
from dynod.runtime.spec import MB, SIZES, DynoKind, DynoSpec, Size
from dynod.runtime.stack import ensure_default_stack

pytestmark = pytest.mark.integration

UID = 230001


class Recorder:
    """An AgentListener that keeps everything and lets tests wait for it."""

    def __init__(self) -> None:
        self.lines: dict[str, list[tuple[str, bytes]]] = {}
        self.exits: list[DynoExit] = []
        self.changed = asyncio.Event()

    def on_output(self, dyno_id: str, stream: str, line: bytes) -> None:
        self.lines.setdefault(dyno_id, []).append((stream, line))
        self.changed.set()

    def on_exit(self, event: DynoExit) -> None:
        self.exits.append(event)
        self.changed.set()

    def text(self, dyno_id: str, stream: str = "stdout") -> list[str]:
        return [ln.decode() for s, ln in self.lines.get(dyno_id, []) if s == stream]

    async def wait_line(self, dyno_id: str, needle: str, timeout: float = 5) -> None:
        async with asyncio.timeout(timeout):
            while not any(needle in t for t in self.text(dyno_id)):
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture(scope="session")
def stack_rootfs() -> Iterator[Path]:
    top = Path(tempfile.mkdtemp(prefix="dynod-stacks-"))
    try:
        yield ensure_default_stack(top).rootfs
    finally:
        # Root may unlink in the read-only version directory; the hard-linked
        # files themselves are never modified.
        shutil.rmtree(top)


@pytest.fixture
def slug_dir() -> Iterator[Path]:
    top = Path(tempfile.mkdtemp(prefix="dynod-slug-"))
    (top / "app" / ".profile.d").mkdir(parents=True)
    (top / "app" / ".profile.d" / "greet.sh").write_text("export GREETING=profiled\n")
    (top / "app" / "hello.txt").write_text("from the slug\n")
    try:
        yield top
    finally:
        shutil.rmtree(top)


def _config(instance: str, run_dir: Path) -> Config:
    n = int(instance[2:], 16)
    subnet = ipaddress.IPv4Network(f"10.{200 + n % 50}.{n // 50 % 256}.0/24")
    return Config(run_dir=run_dir, instance=instance, dyno_subnet=subnet)


@pytest_asyncio.fixture
async def env(instance: str) -> AsyncIterator[tuple[LocalAgent, Recorder]]:
    run_dir = Path(tempfile.mkdtemp(prefix=f"dynod-run-{instance}-"))
    recorder = Recorder()
    agent = LocalAgent(_config(instance, run_dir), recorder)
    try:
        await agent.open()
        yield agent, recorder
    finally:
        try:
            await agent.destroy()
        finally:
            shutil.rmtree(run_dir)


_counter = iter(range(1, 10**6))


def make_spec(
    stack: Path,
    slug: Path | None,
    *argv: str,
    size: Size = SIZES["standard-1x"],
    port: int | None = None,
    kind: DynoKind = DynoKind.FORMATION,
) -> DynoSpec:
    n = next(_counter)
    env = {"DYNO": f"web.{n}", "HOME": "/app"}
    if port:
        env["PORT"] = str(port)
    return DynoSpec(
        dyno_id=f"id{n:04d}",
        app="demo",
        name=f"web.{n}",
        kind=kind,
        argv=argv,
        env=env,
        size=size,
        uid=UID,
        gid=UID,
        stack_dir=stack,
        slug_dir=slug,
        port=port,
        ephemeral_bytes=64 * MB,
    )


@pytest.mark.asyncio
async def test_runtime_dyno_sees_only_itself(
    env: tuple[LocalAgent, Recorder], stack_rootfs: Path, slug_dir: Path
) -> None:
    agent, rec = env
    script = (
        "echo uid=$(id -u); echo host=$(hostname); echo greet=$GREETING; "
        "cat /app/hello.txt; ps -eo pid=,comm= | sed 's/^ */ps /'; "
        "sed 's/^/cg /' /proc/self/cgroup; "
        "touch /usr/probe 2>/dev/null && echo usr=writable || echo usr=readonly; "
        "echo hi > /app/new.txt && echo app=writable; "
        "ls /app/new.txt; echo to-stderr >&2"
    )
    spec = make_spec(stack_rootfs, slug_dir, "bash", "-c", script)
    handle = await agent.start(spec)
    event = await agent.wait(handle.dyno_id)
    assert event.status == 0
    out = rec.text(spec.dyno_id)
    assert f"uid={UID}" in out
    assert f"host={spec.name}" in out
    assert "greet=profiled" in out
    assert "from the slug" in out
    procs = [line.split()[1:] for line in out if line.startswith("ps ")]
    assert procs[0] == ["1", "tini"]
    assert {p[1] for p in procs} <= {"tini", "bash", "ps", "sed"}
    cgroups = [line for line in out if line.startswith("cg ")]
    assert cgroups and all(line.endswith(":/") for line in cgroups)
    assert "usr=readonly" in out
    assert "app=writable" in out
    assert rec.text(spec.dyno_id, "stderr") == ["to-stderr"]
    assert rec.exits == [event]

    # The write to /app was to this dyno's ephemeral layer only.
    again = make_spec(stack_rootfs, slug_dir, "bash", "-c", "ls /app")
    await agent.start(again)
    await agent.wait(again.dyno_id)
    assert "new.txt" not in rec.text(again.dyno_id)
    assert "hello.txt" in rec.text(again.dyno_id)
    assert await agent.list() == []


@pytest.mark.asyncio
async def test_runtime_exit_status_and_signal(
    env: tuple[LocalAgent, Recorder], stack_rootfs: Path, slug_dir: Path
) -> None:
    agent, _ = env
    three = make_spec(stack_rootfs, slug_dir, "bash", "-c", "exit 3")
    await agent.start(three)
    assert (await agent.wait(three.dyno_id)).status == 3

    # SIGKILL of the dyno's PID 1 is reported as a shell would: 128 + 9.
    sleeper = make_spec(stack_rootfs, slug_dir, "sleep", "60")
    await agent.start(sleeper)
    await agent.kill(sleeper.dyno_id)
    event = await agent.wait(sleeper.dyno_id)
    assert event.status == 137
    assert not event.oom_killed


@pytest.mark.asyncio
async def test_runtime_web_dyno_listens(
    env: tuple[LocalAgent, Recorder], stack_rootfs: Path, slug_dir: Path
) -> None:
    agent, rec = env
    server = (
        "import os, socket, time\n"
        "time.sleep(0.3)\n"
        "s = socket.socket(socket.AF_INET6)\n"
        "s.bind(('::', int(os.environ['PORT']))); s.listen()\n"
        "print('bound', flush=True)\n"
        "c, _ = s.accept(); c.sendall(b'hello from ' + socket.gethostname().encode())\n"
        "c.close(); time.sleep(60)\n"
    )
    spec = make_spec(stack_rootfs, slug_dir, "python3", "-c", server, port=5000)
    handle = await agent.start(spec)
    assert handle.ip is not None
    assert not await agent.is_listening(spec.dyno_id, 5000)
    async with asyncio.timeout(5):
        while not await agent.is_listening(spec.dyno_id, 5000):
            await asyncio.sleep(0.02)
    assert not await agent.is_listening(spec.dyno_id, 5001)

    # The host reaches the dyno on its own address over the bridge.
    loop = asyncio.get_running_loop()
    with socket.create_connection((handle.ip, 5000), timeout=5) as conn:
        data = await loop.run_in_executor(None, conn.recv, 100)
    assert data == f"hello from {spec.name}".encode()
    # PID 1 sits in every one of the dyno's cgroups (v1 and cgroup2 alike).
    for path in agent.cgroups.paths(spec.dyno_id):
        assert str(handle.pid) in (path / "cgroup.procs").read_text().split()
    stats = await agent.stats(spec.dyno_id)
    assert stats.memory_limit_bytes == SIZES["standard-1x"].memory_bytes
    assert stats.pids >= 2
    assert await agent.stop(spec.dyno_id, 5) is False
    assert (await agent.wait(spec.dyno_id)).status == 143
    assert "bound" in rec.text(spec.dyno_id)


@pytest.mark.asyncio
async def test_runtime_oom_kill(
    env: tuple[LocalAgent, Recorder], stack_rootfs: Path, slug_dir: Path
) -> None:
    agent, _ = env
    tiny = Size("tiny", 48 * MB, 64, 1)
    hog = "x = []\nwhile True: x.append(bytearray(1 << 20))\n"
    spec = make_spec(stack_rootfs, slug_dir, "python3", "-c", hog, size=tiny)
    await agent.start(spec)
    event = await asyncio.wait_for(agent.wait(spec.dyno_id), 20)
    assert event.oom_killed
    assert event.status == 137


@pytest.mark.asyncio
async def test_runtime_stop_escalates(
    env: tuple[LocalAgent, Recorder], stack_rootfs: Path, slug_dir: Path
) -> None:
    agent, rec = env
    stubborn = "trap '' TERM; echo ready; while true; do sleep 0.1; done"
    spec = make_spec(stack_rootfs, slug_dir, "bash", "-c", stubborn)
    await agent.start(spec)
    await rec.wait_line(spec.dyno_id, "ready")
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await agent.stop(spec.dyno_id, 0.5) is True
    assert loop.time() - began >= 0.5
    assert (await agent.wait(spec.dyno_id)).status == 137
    assert await agent.stop("no-such-dyno", 1) is False


@pytest.mark.asyncio
async def test_runtime_adoption_after_restart(
    env: tuple[LocalAgent, Recorder], stack_rootfs: Path, slug_dir: Path
) -> None:
    agent, rec = env
    # Writes a numbered line every 20 ms; a write that hit EPIPE would end it.
    chatty = (
        "trap '' PIPE; i=0; while true; do i=$((i+1)); "
        'echo "line $i" || { echo EPIPE >&2; exit 99; }; sleep 0.02; done'
    )
    spec = make_spec(stack_rootfs, slug_dir, "bash", "-c", chatty)
    handle = await agent.start(spec)
    await rec.wait_line(spec.dyno_id, "line 3")
    await agent.close()

    # While no agent listens the dyno keeps writing into the spawner's pipe.
    await asyncio.sleep(0.3)
    second = Recorder()
    adopted = LocalAgent(agent.config, second)
    await adopted.open()
    try:
        assert [h.dyno_id for h in await adopted.list()] == [spec.dyno_id]
        (mine,) = await adopted.list()
        assert (mine.pid, mine.ip, mine.name) == (handle.pid, handle.ip, handle.name)
        await second.wait_line(spec.dyno_id, "line")
        count = len(second.text(spec.dyno_id))
        await asyncio.sleep(0.2)
        assert len(second.text(spec.dyno_id)) > count
        assert await adopted.stop(spec.dyno_id, 5) is False
        event = await adopted.wait(spec.dyno_id)
        assert event.status == 143
        assert second.exits == [event]
        assert "EPIPE" not in second.text(spec.dyno_id, "stderr")
    finally:
        # The fixture's agent is closed; destroy through the new one.
        await adopted.destroy()
        await agent.open()


@pytest.mark.asyncio
async def test_runtime_adoption_of_exited_dyno(
    env: tuple[LocalAgent, Recorder], stack_rootfs: Path, slug_dir: Path
) -> None:
    agent, _ = env
    spec = make_spec(stack_rootfs, slug_dir, "bash", "-c", "sleep 0.3; exit 7")
    await agent.start(spec)
    await agent.close()
    # The dyno exits while no agent is attached; its status is kept for the next.
    await asyncio.sleep(0.6)
    second = Recorder()
    adopted = LocalAgent(agent.config, second)
    await adopted.open()
    try:
        event = await adopted.wait(spec.dyno_id)
        assert event.status == 7
        assert second.exits == [event]
    finally:
        await adopted.destroy()
        await agent.open()


def _attached(spec: DynoSpec, tty: bool) -> DynoSpec:
    return replace(spec, kind=DynoKind.ONE_OFF, stdin=True, tty=tty)


async def _read_until(fd: int, needle: bytes, timeout: float = 5) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    async with asyncio.timeout(timeout):
        while needle not in data:
            chunk = await loop.run_in_executor(None, os.read, fd, 4096)
            if not chunk:
                break
            data += chunk
    return data


@pytest.mark.asyncio
async def test_runtime_attached_one_off_over_socketpair(
    env: tuple[LocalAgent, Recorder], stack_rootfs: Path, slug_dir: Path
) -> None:
    agent, rec = env
    base = make_spec(stack_rootfs, slug_dir, "bash", "-c", "read x; echo got $x")
    handle = await agent.start(_attached(base, tty=False))
    assert handle.attach_fd is not None
    try:
        os.write(handle.attach_fd, b"hello\n")
        assert b"got hello" in await _read_until(handle.attach_fd, b"got hello")
    finally:
        os.close(handle.attach_fd)
    assert (await agent.wait(base.dyno_id)).status == 0
    # Attached output goes to the caller, not to the logs.
    assert rec.text(base.dyno_id) == []


@pytest.mark.asyncio
async def test_runtime_attached_one_off_with_tty(
    env: tuple[LocalAgent, Recorder], stack_rootfs: Path, slug_dir: Path
) -> None:
    agent, _ = env
    # The terminal is the dyno's own: named inside, owned by the dyno's user.
    script = (
        "test -t 0 && echo is-a-tty name=$(tty) owner=$(stat -c %u $(tty)) end; "
        "read x; echo got $x"
    )
    base = make_spec(stack_rootfs, slug_dir, "bash", "-c", script)
    handle = await agent.start(_attached(base, tty=True))
    assert handle.attach_fd is not None
    try:
        seen = await _read_until(handle.attach_fd, b" end")
        assert f"is-a-tty name=/dev/pts/0 owner={base.uid} end".encode() in seen
        os.write(handle.attach_fd, b"there\n")
        assert b"got there" in await _read_until(handle.attach_fd, b"got there")
        # Closing the terminal first would hang it up under a shell still
        # exiting (SIGHUP, 129): wait for the exit with the terminal open.
        assert (await agent.wait(base.dyno_id)).status == 0
    finally:
        os.close(handle.attach_fd)


@pytest.mark.asyncio
async def test_runtime_destroy_removes_everything(
    instance: str, stack_rootfs: Path, slug_dir: Path
) -> None:
    run_dir = Path(tempfile.mkdtemp(prefix=f"dynod-run-{instance}-"))
    rec = Recorder()
    agent = LocalAgent(_config(instance, run_dir), rec)
    try:
        await agent.open()
        spec = make_spec(stack_rootfs, slug_dir, "sleep", "60")
        await agent.start(spec)
        spawner = agent.spawner_pid
        assert spawner is not None

        # Nothing of the dyno is mounted where the host can see it.
        mounts = Path("/proc/self/mountinfo").read_text()
        assert str(run_dir) not in mounts and str(stack_rootfs) not in mounts

        await agent.destroy()
        assert [e.status for e in rec.exits] == [137]
        assert not Path(f"/proc/{spawner}").exists() or _zombie(spawner)
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True)
        assert instance not in links.stdout
        assert not list(Path("/sys/fs/cgroup/memory").glob(f"{instance}*"))
        assert sorted(p.name for p in run_dir.iterdir()) == []
    finally:
        shutil.rmtree(run_dir)


def _zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
