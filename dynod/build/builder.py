"""Turning an uploaded source tarball into a slug, in one build dyno.

A build, step by step:

1. the source is extracted safely into ``work_dir/<build_id>/app`` and
   ``.slugignore`` applied; the Procfile, if any, is checked early;
2. the tree is handed to the app's uid, ENV_DIR is written (one file per
   config var) and the app's persistent CACHE_DIR made;
3. one build dyno runs ``compile.sh`` (detect, compile, release) with those
   directories bind-mounted, its output streamed line by line to the caller;
4. the release YAML and the Procfile give the process types (the Procfile
   wins), and the compiled ``/app`` is packed into the slug store.

The work directory is removed whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from dynod.build import workspace
from dynod.build.output import pump_lines, read_untrusted
from dynod.build.procfile import parse_procfile
from dynod.build.release_yaml import parse_release_yaml
from dynod.build.slugs import Slug, SlugStore
from dynod.errors import BuildFailed, UserInputError
from dynod.runtime.agent import Agent, DynoExit
from dynod.runtime.spec import MB, BindMount, DynoKind, DynoSpec, Size

log = structlog.get_logger("dynod.build")

# In-dyno places of a forced buildpack that is not one of the shipped ones.
CUSTOM_BUILDPACK = "/buildpack"
SLUG_SOFT_LIMIT = 300 * MB
_BUILD_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_PATH = "/usr/local/bin:/usr/bin:/bin"
# After the dyno exits, its output should end at once; do not wait forever.
_DRAIN_SECONDS = 5.0


@dataclass(frozen=True)
class BuildRequest:
    build_id: str
    app: str
    # The uploaded gzipped tar of the app's source.
    source: Path
    # Config vars, written to ENV_DIR.
    env: dict[str, str]
    uid: int
    gid: int
    stack_dir: Path
    # A shipped buildpack's name, an absolute path to one on disk, or None to
    # detect.
    buildpack: str | None
    memory_bytes: int
    timeout: float


@dataclass(frozen=True)
class BuildResult:
    slug: Slug
    process_types: dict[str, str]
    buildpack: str


def _stack_name(stack_dir: Path) -> str:
    """STACK for buildpacks: the stack's name, from ``<name>/<version>/rootfs``."""
    if stack_dir.name == "rootfs" and len(stack_dir.parts) > 3:
        return stack_dir.parent.parent.name
    return stack_dir.name


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} seconds"


class Builder:
    def __init__(
        self,
        agent: Agent,
        work_dir: Path,
        cache_root: Path,
        buildpacks_dir: Path,
        slugs: SlugStore,
        new_dyno_id: Callable[[], str],
    ) -> None:
        self._agent = agent
        self._work_dir = work_dir
        self._cache_root = cache_root
        self._buildpacks_dir = buildpacks_dir
        self._slugs = slugs
        self._new_dyno_id = new_dyno_id
        # build_id -> dyno_id of the build dyno, once started.
        self._running: dict[str, str] = {}
        self._cancelled: set[str] = set()
        self._active: set[str] = set()

    def _buildpack_env(self, req: BuildRequest) -> tuple[str, tuple[BindMount, ...]]:
        """BUILDPACK's value for compile.sh, and a bind for a custom buildpack."""
        if req.buildpack is None:
            return "", ()
        if req.buildpack.startswith("/"):
            path = Path(req.buildpack)
            if not (path / "bin" / "compile").is_file():
                raise UserInputError(
                    f"Buildpack {req.buildpack} has no bin/compile: give a directory "
                    "holding a classic buildpack (bin/detect, bin/compile)."
                )
            return CUSTOM_BUILDPACK, (BindMount(path, CUSTOM_BUILDPACK),)
        shipped = sorted(
            p.name for p in self._buildpacks_dir.iterdir() if (p / "bin").is_dir()
        )
        if req.buildpack not in shipped:
            raise UserInputError(
                f"Buildpack {req.buildpack!r} is not shipped with dynod: use one of "
                f"{', '.join(shipped)} or an absolute path to a buildpack."
            )
        return req.buildpack, ()

    def _spec(
        self, req: BuildRequest, top: Path, buildpack: str, extra: tuple[BindMount, ...]
    ) -> DynoSpec:
        binds = (
            BindMount(top / "app", "/app", readonly=False),
            BindMount(self._cache_root / req.app, "/cache", readonly=False),
            BindMount(top / "env", "/env"),
            BindMount(self._buildpacks_dir, "/buildpacks"),
            BindMount(top / "driver", "/dynod"),
            BindMount(top / "output", "/output", readonly=False),
            *extra,
        )
        env = {
            "STACK": _stack_name(req.stack_dir),
            "HOME": "/app",
            "PATH": _PATH,
            "LANG": "C.UTF-8",
            "BUILDPACK": buildpack,
            "MEMORY_AVAILABLE": str(req.memory_bytes // MB),
        }
        return DynoSpec(
            dyno_id=self._new_dyno_id(),
            app=req.app,
            name="build",
            kind=DynoKind.BUILD,
            argv=("/bin/bash", "/dynod/compile.sh"),
            env=env,
            size=Size(
                name="build", memory_bytes=req.memory_bytes, pids=4096, cpu_shares=2
            ),
            uid=req.uid,
            gid=req.gid,
            stack_dir=req.stack_dir,
            binds=binds,
            stdin=True,
        )

    async def _run(
        self, req: BuildRequest, spec: DynoSpec, output: Callable[[str], None]
    ) -> DynoExit:
        """Run the build dyno to its end, streaming its output."""
        if req.build_id in self._cancelled:
            raise BuildFailed(f"Build {req.build_id} was cancelled.")
        handle = await self._agent.start(spec)
        self._running[req.build_id] = spec.dyno_id
        if handle.attach_fd is None:
            await self._agent.kill(spec.dyno_id)
            await self._agent.wait(spec.dyno_id)
            raise BuildFailed("The build dyno started without an output channel.")
        sock = socket.socket(fileno=handle.attach_fd)
        exited = False
        try:
            # The build reads no input: tell it so at once.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
            pump = asyncio.ensure_future(pump_lines(sock.fileno(), output))
            try:
                async with asyncio.timeout(req.timeout):
                    exit_ = await self._agent.wait(spec.dyno_id)
                exited = True
            except TimeoutError:
                await self._agent.kill(spec.dyno_id)
                await self._agent.wait(spec.dyno_id)
                exited = True
                raise BuildFailed(
                    f"Build timed out after {_duration(req.timeout)}: the buildpack "
                    "did not finish compiling. Make the build faster or raise "
                    "build_timeout."
                ) from None
            finally:
                # A caller that gave up on the build (task cancelled) must not
                # leave its dyno compiling; then the output ends at once.
                if not exited:
                    await asyncio.shield(self._agent.kill(spec.dyno_id))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(pump), _DRAIN_SECONDS)
                pump.cancel()
        finally:
            sock.close()
            self._running.pop(req.build_id, None)
        return exit_

    def _check_exit(self, req: BuildRequest, exit_: DynoExit) -> None:
        if req.build_id in self._cancelled:
            raise BuildFailed(f"Build {req.build_id} was cancelled.")
        if exit_.oom_killed:
            raise BuildFailed(
                "Build failed: the build was killed by the out-of-memory killer "
                f"(limit {req.memory_bytes // MB} MB). Reduce the build's memory use "
                "or raise build_memory_bytes."
            )
        if exit_.status != 0:
            raise BuildFailed(
                f"Build failed: the buildpack exited with status {exit_.status}. "
                "See the build output above for the reason."
            )

    def _result_types(self, top: Path) -> tuple[str, dict[str, str], dict[str, str]]:
        """The buildpack's name, its default process types and the Procfile's."""
        name = (read_untrusted(top / "output" / "buildpack", 4096) or "").strip()
        if not name:
            raise BuildFailed("Build failed: no buildpack reported finishing.")
        release = read_untrusted(top / "output" / "release.yml") or ""
        defaults = parse_release_yaml(release)
        procfile = read_untrusted(top / "app" / "Procfile")
        return name, defaults, parse_procfile(procfile or "")

    async def build(
        self, req: BuildRequest, output: Callable[[str], None]
    ) -> BuildResult:
        """Build ``req`` into a stored slug, passing each output line to ``output``.

        Raises :class:`dynod.errors.InvalidArchive` or
        :class:`dynod.errors.InvalidProcfile` for bad source,
        :class:`UserInputError` for an unknown buildpack, and
        :class:`BuildFailed` when the buildpack fails, runs out of memory or
        time, or the build is cancelled.
        """
        if not _BUILD_ID_RE.fullmatch(req.build_id):
            raise UserInputError(f"Build id {req.build_id!r} is not a plain name.")
        if req.build_id in self._active:
            raise UserInputError(f"Build {req.build_id} is already running.")
        top = self._work_dir / req.build_id
        self._active.add(req.build_id)
        try:
            # Lay out the build's directories and start its dyno.
            buildpack, extra = self._buildpack_env(req)
            removed = await asyncio.to_thread(
                workspace.prepare,
                top,
                req.source,
                req.env,
                self._cache_root / req.app,
                req.uid,
                req.gid,
            )
            if removed:
                output(
                    f"-----> Deleting {len(removed)} files matching .slugignore "
                    "patterns."
                )
            spec = self._spec(req, top, buildpack, extra)
            exit_ = await self._run(req, spec, output)
            self._check_exit(req, exit_)

            # Work out the process types: the Procfile wins over the buildpack.
            name, defaults, declared = self._result_types(top)
            output("-----> Discovering process types")
            if declared:
                output(f"       Procfile declares types     -> {', '.join(declared)}")
            if defaults or not declared:
                output(f"       Default types for buildpack -> {', '.join(defaults)}")
            types = {**defaults, **declared}

            # Pack /app as the slug.
            slug = await asyncio.to_thread(self._slugs.pack, top / "app")
            output(f"-----> Compressing... done, {slug.size / MB:.1f}MB")
            if slug.size > SLUG_SOFT_LIMIT:
                output(
                    f" !     Your slug size ({slug.size // MB} MB) exceeds our soft "
                    "limit (300 MB) which may affect boot time."
                )
            buildpack_name = req.buildpack if name == CUSTOM_BUILDPACK else name
            log.info("build done", app=req.app, build=req.build_id, slug=slug.digest)
            return BuildResult(
                slug=slug, process_types=types, buildpack=buildpack_name or name
            )
        finally:
            self._active.discard(req.build_id)
            self._cancelled.discard(req.build_id)
            await asyncio.to_thread(shutil.rmtree, top, True)

    async def remove_cache(self, app: str) -> None:
        """Remove an app's build cache, so a new app of the same name starts clean."""
        await asyncio.to_thread(shutil.rmtree, self._cache_root / app, True)

    async def cancel(self, build_id: str) -> None:
        """Stop build ``build_id``; its :meth:`build` raises :class:`BuildFailed`.

        A build that has not started its dyno yet fails when it gets there.
        """
        if build_id not in self._active:
            return
        self._cancelled.add(build_id)
        dyno_id = self._running.get(build_id)
        if dyno_id is not None:
            await self._agent.kill(dyno_id)
