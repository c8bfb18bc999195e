"""Builds in real build dynos: the local agent, a real stack, the shipped buildpacks.

Then the slug runs: a formation dyno started from it finds the venv the python
buildpack made, which proves the paths written at build time hold at runtime.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from dynod.build.archive import pack_source
from dynod.build.builder import Builder, BuildRequest
from dynod.build.slugs import SlugStore
from dynod.config import Config
from dynod.errors import BuildFailed
from dynod.runtime.agent import DynoExit
from dynod.runtime.local import LocalAgent
from dynod.runtime.spec import MB, SIZES, DynoKind, DynoSpec
from dynod.runtime.stack import ensure_default_stack

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "apps"
UID = 230101


class Recorder:
    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {}

    def on_output(self, dyno_id: str, stream: str, line: bytes) -> None:
        self.lines.setdefault(dyno_id, []).append(line.decode(errors="replace"))

    def on_exit(self, event: DynoExit) -> None:
        pass


@dataclass
class Env:
    agent: LocalAgent
    recorder: Recorder
    builder: Builder
    slugs: SlugStore
    top: Path
    stack: Path

    def request(self, app: Path, build_id: str, **kw: object) -> BuildRequest:
        source = self.top / f"{build_id}.tgz"
        with source.open("wb") as f:
            pack_source(app, f)
        fields: dict[str, object] = {
            "build_id": build_id,
            "app": "demo",
            "source": source,
            "env": {"GREETING": "hi"},
            "uid": UID,
            "gid": UID,
            "stack_dir": self.stack,
            "buildpack": None,
            "memory_bytes": 512 * MB,
            "timeout": 120.0,
        }
        fields.update(kw)
        return BuildRequest(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def stack_rootfs() -> Iterator[Path]:
    top = Path(tempfile.mkdtemp(prefix="dynod-stacks-"))
    try:
        yield ensure_default_stack(top).rootfs
    finally:
        shutil.rmtree(top)


@pytest_asyncio.fixture
async def env(instance: str, stack_rootfs: Path) -> AsyncIterator[Env]:
    top = Path(tempfile.mkdtemp(prefix=f"dynod-build-{instance}-"))
    n = int(instance[2:], 16)
    subnet = ipaddress.IPv4Network(f"10.{150 + n % 50}.{n // 50 % 256}.0/24")
    config = Config(run_dir=top / "run", instance=instance, dyno_subnet=subnet)
    recorder = Recorder()
    agent = LocalAgent(config, recorder)
    ids = itertools.count(1)
    slugs = SlugStore(top / "slugs")
    builder = Builder(
        agent,
        top / "work",
        top / "cache",
        REPO / "buildpacks",
        slugs,
        lambda: f"bd{next(ids):04d}",
    )
    try:
        await agent.open()
        yield Env(agent, recorder, builder, slugs, top, stack_rootfs)
    finally:
        try:
            await agent.destroy()
        finally:
            shutil.rmtree(top)


@pytest.mark.asyncio
async def test_build_python_example_then_run_it(env: Env) -> None:
    output: list[str] = []
    req = env.request(REPO / "examples" / "python-app", "b1")
    result = await env.builder.build(req, output.append)

    assert output[0] == "-----> Python app detected", output
    assert result.process_types["web"] == "python3 app.py"
    assert output[-1].startswith("-----> Compressing... done, ")
    assert list((env.top / "work").iterdir()) == []

    # A dyno from the slug finds the venv on PATH, as /app/.heroku/python.
    slug_dir = await asyncio.to_thread(env.slugs.unpacked, result.slug.digest, UID, UID)
    spec = DynoSpec(
        dyno_id="run0001",
        app="demo",
        name="run.1",
        kind=DynoKind.ONE_OFF,
        argv=("bash", "-c", "command -v python3; echo $WEB_CONCURRENCY"),
        env={"HOME": "/app", "DYNO": "run.1", "MEMORY_AVAILABLE": "512"},
        size=SIZES["standard-1x"],
        uid=UID,
        gid=UID,
        stack_dir=env.stack,
        slug_dir=slug_dir,
        ephemeral_bytes=64 * MB,
    )
    await env.agent.start(spec)
    exit_ = await env.agent.wait(spec.dyno_id)
    assert exit_.status == 0, env.recorder.lines
    assert env.recorder.lines[spec.dyno_id] == ["/app/.heroku/python/bin/python3", "2"]


@pytest.mark.asyncio
async def test_build_failure_and_timeout_in_a_dyno(env: Env) -> None:
    output: list[str] = []
    failing = FIXTURES / "failing-buildpack"
    req = env.request(failing / "app", "b2", buildpack=str(failing / "buildpack"))
    with pytest.raises(BuildFailed, match="exited with status 1"):
        await env.builder.build(req, output.append)
    assert "       something went wrong" in output

    hanging = FIXTURES / "hanging"
    req = env.request(
        hanging / "app", "b3", buildpack=str(hanging / "buildpack"), timeout=2.0
    )
    with pytest.raises(BuildFailed, match="timed out after 2 seconds"):
        await env.builder.build(req, output.append)
    assert "-----> Compiling forever" in output
    assert await env.agent.list() == []
