"""Builder orchestration, against a fake agent that runs the build on the host.

The fake maps each bind mount's target to its source through compile.sh's
environment variables, and hands output back through a socketpair, as the real
agent's attach fd does.  Everything else (extraction, buildpacks, slug
packing) is real.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynod.build.archive import pack_source
from dynod.build.builder import Builder, BuildRequest, BuildResult
from dynod.build.slugs import SlugStore
from dynod.errors import (
    BuildFailed,
    InvalidArchive,
    InvalidConfig,
    InvalidProcfile,
    UserInputError,
)
from dynod.runtime.agent import DynoExit, DynoHandle
from dynod.runtime.spec import MB, DynoKind, DynoSpec

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "apps"
EXAMPLE = REPO / "examples" / "python-app"
_ENV_FOR_TARGET = {
    "/app": "BUILD_DIR",
    "/cache": "CACHE_DIR",
    "/env": "ENV_DIR",
    "/buildpacks": "BUILDPACKS_DIR",
    "/output": "OUTPUT_DIR",
}


class FakeAgent:
    """Runs a build dyno's argv as a host process group."""

    def __init__(self, oom: bool = False) -> None:
        self.oom = oom
        self.specs: list[DynoSpec] = []
        self.procs: dict[str, asyncio.subprocess.Process] = {}

    async def start(self, spec: DynoSpec) -> DynoHandle:
        self.specs.append(spec)
        binds = {b.target: str(b.source) for b in spec.binds}
        env = {**spec.env, "PATH": "/usr/bin:/bin", "HOME": binds["/app"]}
        env |= {var: binds[target] for target, var in _ENV_FOR_TARGET.items()}
        if env["BUILDPACK"].startswith("/"):
            env["BUILDPACK"] = binds[env["BUILDPACK"]]
        argv = [a.replace("/dynod/", binds["/dynod"] + "/") for a in spec.argv]

        ours, theirs = socket.socketpair()
        with theirs:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=theirs.fileno(),
                stdout=theirs.fileno(),
                stderr=theirs.fileno(),
                env=env,
                start_new_session=True,
            )
        self.procs[spec.dyno_id] = proc
        return DynoHandle(
            dyno_id=spec.dyno_id,
            app=spec.app,
            name=spec.name,
            pid=proc.pid,
            ip=None,
            started_at=time.time(),
            attach_fd=ours.detach(),
        )

    async def wait(self, dyno_id: str) -> DynoExit:
        status = await self.procs[dyno_id].wait()
        if status < 0:
            status = 128 - status
        return DynoExit(dyno_id, 137 if self.oom else status, oom_killed=self.oom)

    async def kill(self, dyno_id: str) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[dyno_id].pid, signal.SIGKILL)

    def cleanup(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


class Env:
    def __init__(self, root: Path, agent: FakeAgent) -> None:
        self.root = root
        self.agent = agent
        self.work = root / "work"
        self.cache = root / "cache"
        self.slugs = SlugStore(root / "slugs")
        ids = itertools.count(1)
        self.builder = Builder(
            agent,  # type: ignore[arg-type]
            self.work,
            self.cache,
            REPO / "buildpacks",
            self.slugs,
            lambda: f"dyno{next(ids)}",
        )
        self.output: list[str] = []

    def source(self, app: Path) -> Path:
        tarball = self.root / f"{app.name}.tgz"
        with tarball.open("wb") as f:
            pack_source(app, f)
        return tarball

    def request(self, app: Path | None = None, **kw: object) -> BuildRequest:
        fields: dict[str, object] = {
            "build_id": "b1",
            "app": "demo",
            "source": self.source(app) if app else self.root / "none.tgz",
            "env": {},
            "uid": os.getuid(),
            "gid": os.getgid(),
            "stack_dir": Path("/var/lib/dynod/stacks/host-12/20261203/rootfs"),
            "buildpack": None,
            "memory_bytes": 512 * MB,
            "timeout": 60.0,
        }
        fields.update(kw)
        return BuildRequest(**fields)  # type: ignore[arg-type]

    def build(self, req: BuildRequest) -> BuildResult:
        return asyncio.run(self.builder.build(req, self.output.append))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    agent = FakeAgent()
    yield Env(tmp_path, agent)
    agent.cleanup()


def test_python_example_builds_a_slug(env: Env) -> None:
    result = env.build(env.request(EXAMPLE, env={"GREETING": "hi"}))

    assert result.buildpack == "python"
    assert result.process_types == {
        "web": "python3 app.py",
        "worker": "python3 worker.py",
    }
    assert env.output[0] == "-----> Python app detected"
    assert "       Procfile declares types     -> web, worker" in env.output
    assert env.output[-1].startswith("-----> Compressing... done, ")
    with tarfile.open(result.slug.path) as tar:
        names = set(tar.getnames())
    assert {"app/app.py", "app/.heroku/python/bin/python3"} <= names
    assert "app/.profile.d/python.sh" in names
    assert list(env.work.iterdir()) == []

    # The dyno was a build dyno with the binds compile.sh expects.
    (spec,) = env.agent.specs
    assert spec.kind is DynoKind.BUILD
    assert spec.argv == ("/bin/bash", "/dynod/compile.sh")
    assert spec.stdin and spec.size.memory_bytes == 512 * MB
    assert {b.target: b.readonly for b in spec.binds} == {
        "/app": False,
        "/cache": False,
        "/env": True,
        "/buildpacks": True,
        "/dynod": True,
        "/output": False,
    }
    assert spec.env["STACK"] == "host-12" and spec.env["BUILDPACK"] == ""


def test_node_defaults_and_procfile_override(env: Env, tmp_path: Path) -> None:
    assert env.build(env.request(FIXTURES / "node-app")).process_types == {
        "web": "npm start"
    }
    app = tmp_path / "node-with-procfile"
    app.mkdir()
    for f in (FIXTURES / "node-app").iterdir():
        (app / f.name).write_bytes(f.read_bytes())
    (app / "Procfile").write_text("web: node server.js --fast\nclock: node c.js\n")
    result = env.build(env.request(app, build_id="b2"))
    assert result.buildpack == "nodejs"
    assert result.process_types == {
        "web": "node server.js --fast",
        "clock": "node c.js",
    }


def test_env_dir_and_persistent_cache(env: Env, tmp_path: Path) -> None:
    # A custom buildpack that reports a config var and counts its builds.
    bp = tmp_path / "bp"
    (bp / "bin").mkdir(parents=True)
    (bp / "bin" / "compile").write_text(
        "#!/bin/bash\n"
        'echo "       GREETING=$(cat "$3/GREETING")"\n'
        'n=$(( $(cat "$2/count" 2>/dev/null || echo 0) + 1 )); echo $n > "$2/count"\n'
        'echo "       build $n"\n'
    )
    (bp / "bin" / "compile").chmod(0o755)
    app = FIXTURES / "release-fails"
    for n in (1, 2):
        result = env.build(
            env.request(
                app, build_id=f"b{n}", env={"GREETING": "hi"}, buildpack=str(bp)
            )
        )
        assert result.buildpack == str(bp)
        assert f"       build {n}" in env.output
    assert "       GREETING=hi" in env.output
    assert result.process_types == {
        "release": "exit 1",
        "web": "python3 -m http.server $PORT",
    }


def test_failing_buildpack(env: Env) -> None:
    fixture = FIXTURES / "failing-buildpack"
    req = env.request(fixture / "app", buildpack=str(fixture / "buildpack"))
    with pytest.raises(BuildFailed, match="exited with status 1"):
        env.build(req)
    assert "       something went wrong" in env.output
    assert list(env.work.iterdir()) == []
    assert list((env.slugs.root / "sha256").iterdir()) == []


def test_timeout_kills_the_build(env: Env) -> None:
    fixture = FIXTURES / "hanging"
    req = env.request(
        fixture / "app", buildpack=str(fixture / "buildpack"), timeout=1.0
    )
    started = time.monotonic()
    with pytest.raises(BuildFailed, match="timed out after 1 seconds"):
        env.build(req)
    assert time.monotonic() - started < 8
    (proc,) = env.agent.procs.values()
    assert proc.returncode == -signal.SIGKILL
    assert "-----> Compiling forever" in env.output
    assert list(env.work.iterdir()) == []


def test_cancel(env: Env) -> None:
    fixture = FIXTURES / "hanging"
    req = env.request(fixture / "app", buildpack=str(fixture / "buildpack"))

    async def scenario() -> None:
        task = asyncio.create_task(env.builder.build(req, env.output.append))
        while "-----> Compiling forever" not in env.output:
            await asyncio.sleep(0.02)
        await env.builder.cancel("b1")
        with pytest.raises(BuildFailed, match="cancelled"):
            await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    assert list(env.work.iterdir()) == []


def test_cancelling_the_caller_kills_the_dyno(env: Env) -> None:
    fixture = FIXTURES / "hanging"
    req = env.request(fixture / "app", buildpack=str(fixture / "buildpack"))

    async def scenario() -> None:
        task = asyncio.create_task(env.builder.build(req, env.output.append))
        while "-----> Compiling forever" not in env.output:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        (proc,) = env.agent.procs.values()
        await asyncio.wait_for(proc.wait(), 5)

    asyncio.run(scenario())
    assert list(env.work.iterdir()) == []


def test_out_of_memory(tmp_path: Path) -> None:
    agent = FakeAgent(oom=True)
    env = Env(tmp_path, agent)
    try:
        with pytest.raises(BuildFailed, match=r"out-of-memory killer \(limit 512 MB\)"):
            env.build(env.request(EXAMPLE))
    finally:
        agent.cleanup()


def test_bad_input_fails_before_any_dyno(env: Env, tmp_path: Path) -> None:
    # A traversal archive.
    evil = tmp_path / "evil.tgz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../x")
        tar.addfile(info)
    with pytest.raises(InvalidArchive):
        env.build(env.request(source=evil))

    # A broken Procfile.
    app = tmp_path / "bad-procfile"
    app.mkdir()
    (app / "Procfile").write_text("web python3 app.py\n")
    with pytest.raises(InvalidProcfile, match="line 1"):
        env.build(env.request(app))

    # A config var name that would leave ENV_DIR.
    with pytest.raises(InvalidConfig, match=r"'\.\./x' is invalid"):
        env.build(env.request(EXAMPLE, env={"../x": "y"}))

    # A buildpack nobody ships.
    with pytest.raises(UserInputError, match="'ruby' is not shipped"):
        env.build(env.request(EXAMPLE, buildpack="ruby"))

    assert env.agent.specs == []
    assert list(env.work.iterdir()) == []


def test_slugignore_is_applied(env: Env, tmp_path: Path) -> None:
    app = tmp_path / "ignoring"
    app.mkdir()
    (app / "Procfile").write_text("web: true\n")
    (app / "big.bin").write_bytes(b"0" * 100)
    (app / ".slugignore").write_text("*.bin\n")
    # Packed without honouring .slugignore, as another client might.
    src = tmp_path / "raw.tgz"
    with tarfile.open(src, "w:gz") as tar:
        for f in app.iterdir():
            tar.add(f, arcname=f.name)
    result = env.build(env.request(source=src))
    assert "-----> Deleting 1 files matching .slugignore patterns." in env.output
    with tarfile.open(result.slug.path) as tar:
        assert "app/big.bin" not in tar.getnames()
