"""The release pipeline: builds become releases, releases roll out.

Every change that alters what runs (a deploy, a config change, a rollback)
creates a numbered release and rolls the formation to it.  Changes to one app
queue behind each other (one lock per app), so concurrent deploys never
interleave; a failed build or release phase leaves the current release running.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import structlog

from dynod.build.builder import Builder, BuildRequest
from dynod.build.slugs import SlugStore
from dynod.config import Config
from dynod.errors import BuildFailed, Conflict, DynodError, NotFound
from dynod.logs.hub import LogHub
from dynod.manager.manager import Manager
from dynod.releases.output import OutputLog
from dynod.runtime.spec import DEFAULT_SIZE
from dynod.state.db import Store
from dynod.state.records import App, Build, BuildStatus, FormationEntry, Release
from dynod.state.records import ReleaseStatus as RS

log = structlog.get_logger("dynod.releases")

Output = Callable[[str], None]


class Releases:
    def __init__(
        self,
        config: Config,
        store: Store,
        manager: Manager,
        hub: LogHub,
        builder: Builder,
        slugs: SlugStore,
        stack_dir: Path,
    ) -> None:
        self.config = config
        self.store = store
        self.manager = manager
        self.hub = hub
        self.builder = builder
        self.slugs = slugs
        self.stack_dir = stack_dir
        self.outputs: dict[str, OutputLog] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._collecting = asyncio.Lock()
        self._collect_queued = False
        # Builds waiting for their app's lock, and builds cancelled by users.
        self._queued: dict[str, asyncio.Task[None]] = {}
        self._cancelled: set[str] = set()

    def output_path(self, kind: str, ident: str) -> Path:
        return self.config.state_dir / "output" / kind / f"{ident}.log"

    # Deploys

    def deploy(
        self,
        app: App,
        source: Path,
        *,
        buildpack: str | None,
        description: str,
        user: str,
    ) -> Build:
        """Queue a build of ``source`` (a tar.gz); returns the pending build."""
        build = self.store.create_build(app, description=description, user=user)
        output = OutputLog(self.output_path("builds", build.id))
        self.outputs[build.id] = output
        task = asyncio.ensure_future(
            self._deploy(app.name, build, source, buildpack, output)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return build

    async def _deploy(
        self,
        app_name: str,
        build: Build,
        source: Path,
        buildpack: str | None,
        output: OutputLog,
    ) -> None:
        status = BuildStatus.FAILED
        digest = bp = None
        version = None
        try:
            async with self._turn(app_name, build, output):
                if build.id in self._cancelled:
                    raise BuildFailed(f"Build {build.id} was cancelled before it ran.")
                app = self.store.app(app_name)
                self.hub.emit(app.id, "dynod", "api", f"Build started by {build.user}")
                uid = self.config.app_uid(app.uid_index)
                result = await self.builder.build(
                    BuildRequest(
                        build_id=build.id,
                        app=app.name,
                        source=source,
                        env=app.config,
                        uid=uid,
                        gid=uid,
                        stack_dir=self.stack_dir,
                        buildpack=buildpack,
                        memory_bytes=self.config.build_memory_bytes,
                        timeout=self.config.build_timeout,
                    ),
                    output.write,
                )
                digest, bp = result.slug.digest, result.buildpack
                self.store.finish_build(
                    build, BuildStatus.PENDING, buildpack=bp, slug_digest=digest
                )
                app = self.store.app(app_name)
                release = await self._release(
                    app,
                    slug_digest=digest,
                    config=app.config,
                    process_types=result.process_types,
                    description=build.description or f"Deploy {digest[:8]}",
                    user=build.user,
                    output=output.write,
                )
                version = release.version
                # A failing release phase fails the release, not the build
                # (as on Heroku): the slug is made and stays usable.
                status = BuildStatus.SUCCEEDED
                if release.status is RS.SUCCEEDED:
                    output.write(f"-----> Launching... done, v{version}")
                    self.hub.emit(
                        app.id, "dynod", "api", f"Deploy {digest[:8]} by {build.user}"
                    )
        except DynodError as exc:
            output.write(f" !     {exc}")
        except Exception:
            log.exception("build crashed", build=build.id)
            output.write(" !     The build failed because of an internal error.")
        finally:
            self._cancelled.discard(build.id)
            source.unlink(missing_ok=True)
            self.store.finish_build(
                build,
                status,
                buildpack=bp,
                slug_digest=digest,
                release_version=version,
            )
            app_id = build.app_id
            word = "succeeded" if status is BuildStatus.SUCCEEDED else "failed"
            self.hub.emit(app_id, "dynod", "api", f"Build {word}")
            output.close()
            self.outputs.pop(build.id, None)

    @contextlib.asynccontextmanager
    async def _turn(
        self, app_name: str, build: Build, output: OutputLog
    ) -> AsyncIterator[None]:
        """Hold the app's lock for ``build``, once the changes before it are done.

        Raises :class:`BuildFailed` if the build is cancelled while it waits.
        """
        lock = self._lock(app_name)
        if lock.locked():
            output.write(
                "-----> Waiting for the app's previous build or release to finish"
            )
        waiting = asyncio.current_task()
        assert waiting is not None
        self._queued[build.id] = waiting
        try:
            await lock.acquire()
        except asyncio.CancelledError:
            if build.id not in self._cancelled:
                raise
            # Our own cancel_build, not a shutdown: the build fails, quietly.
            waiting.uncancel()
            raise BuildFailed(
                f"Build {build.id} was cancelled before it ran."
            ) from None
        finally:
            del self._queued[build.id]
        try:
            yield
        finally:
            lock.release()

    async def cancel_build(self, build: Build) -> None:
        if build.status is not BuildStatus.PENDING:
            raise Conflict(f"Build {build.id} has already finished.")
        # A build still queued behind the app's lock never starts; a running one
        # has its build dyno killed.
        self._cancelled.add(build.id)
        queued = self._queued.get(build.id)
        if queued is not None:
            queued.cancel()
        else:
            await self.builder.cancel(build.id)

    # Releases

    async def _release(
        self,
        app: App,
        *,
        slug_digest: str | None,
        config: dict[str, str],
        process_types: dict[str, str],
        description: str,
        user: str,
        output: Output | None = None,
    ) -> Release:
        # Create the release as pending, run its release phase, and only then make
        # it current and roll the formation to it.
        release = self.store.create_release(
            app,
            description=description,
            slug_digest=slug_digest,
            config=config,
            process_types=process_types,
            user=user,
            status=RS.PENDING,
        )
        if "release" in process_types and slug_digest is not None:
            release = await self._release_phase(app, release, output)
            if release.status is RS.FAILED:
                return release
        release = self.store.set_release_status(release, RS.SUCCEEDED)
        self._ensure_formation(app, process_types)
        app = self.store.update_app(app.name, current_release=release.version)
        self.hub.emit(
            app.id, "dynod", "api", f"Release v{release.version} created by {user}"
        )
        self.manager.reset_backoff(app)
        await self.manager.reconcile(app.name)
        self.collect_slugs_soon()
        return release

    async def _release_phase(
        self, app: App, release: Release, output: Output | None
    ) -> Release:
        phase_log = OutputLog(self.output_path("releases", release.id))
        self.outputs[release.id] = phase_log

        def both(line: str) -> None:
            phase_log.write(line)
            if output is not None:
                output(line)

        both("-----> Running release command...")
        try:
            status = await self.manager.run_release_phase(app, release, both)
            if status != 0:
                kept = (
                    "; the current release keeps running" if app.current_release else ""
                )
                both(
                    f" !     Release command failed with exit status {status}: "
                    f"v{release.version} was not deployed{kept}."
                )
        finally:
            phase_log.close()
            self.outputs.pop(release.id, None)
        if status == 0:
            return release
        self.hub.emit(app.id, "dynod", "api", f"Release v{release.version} failed")
        return self.store.set_release_status(release, RS.FAILED)

    def _ensure_formation(self, app: App, process_types: dict[str, str]) -> None:
        # New process types start at web=1 and 0 for the others, as on Heroku.
        known = {e.type for e in self.store.formation(app)}
        new = [
            FormationEntry(t, 1 if t == "web" else 0, DEFAULT_SIZE)
            for t in process_types
            if t not in known and t != "release"
        ]
        if new:
            self.store.set_formation(app, new)

    async def set_config(
        self, app: App, new_config: dict[str, str], user: str
    ) -> Release:
        async with self._lock(app.name):
            app = self.store.app(app.name)
            changed = sorted(
                k
                for k in set(app.config) | set(new_config)
                if app.config.get(k) != new_config.get(k)
            )
            app = self.store.update_app(app.name, config=new_config)
            added = [k for k in changed if k in new_config]
            removed = [k for k in changed if k not in new_config]
            parts = []
            if added:
                parts.append(f"Set {', '.join(added)} config vars")
                self.hub.emit(app.id, "dynod", "api", f"{parts[-1]} by {user}")
            if removed:
                parts.append(f"Remove {', '.join(removed)} config vars")
                self.hub.emit(app.id, "dynod", "api", f"{parts[-1]} by {user}")
            current = self._current(app)
            release = await self._release(
                app,
                slug_digest=current.slug_digest if current else None,
                config=new_config,
                process_types=current.process_types if current else {},
                description="; ".join(parts) or "Config unchanged",
                user=user,
            )
            if release.status is RS.FAILED:
                self.store.update_app(
                    app.name, config=current.config if current else {}
                )
            return release

    async def rollback(self, app: App, target: Release, user: str) -> Release:
        if target.status is not RS.SUCCEEDED:
            raise Conflict(
                f"Release v{target.version} of {app.name} did not succeed, so it "
                "cannot be rolled back to: pick another with `dynoctl releases`."
            )
        if target.slug_digest is not None:
            try:
                # Claimed, so the collector keeps it while the rollback runs.
                await asyncio.to_thread(self.slugs.claim, target.slug_digest)
            except NotFound:
                raise Conflict(
                    f"The slug of v{target.version} of {app.name} was removed to "
                    "save disk space (each app keeps the slugs of its newest "
                    f"{self.config.slugs_kept_per_app} releases): roll back to a "
                    "newer release, or deploy that code again."
                ) from None
        async with self._lock(app.name):
            previous = self.store.app(app.name).config
            app = self.store.update_app(app.name, config=target.config)
            release = await self._release(
                app,
                slug_digest=target.slug_digest,
                config=target.config,
                process_types=target.process_types,
                description=f"Rollback to v{target.version}",
                user=user,
            )
            if release.status is RS.FAILED:
                self.store.update_app(app.name, config=previous)
            return release

    # Slug garbage collection

    def collect_slugs_soon(self) -> None:
        """Remove, in the background, the slugs that nothing keeps any more.

        Archives stay for each app's newest releases (rollback targets), its
        current release, running builds and running dynos; unpacked trees only
        for current releases and running dynos.
        """
        # Calls while one collection waits to start are folded into it.
        if self._collect_queued:
            return
        self._collect_queued = True
        task = asyncio.ensure_future(self._collect_slugs())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _collect_slugs(self) -> None:
        async with self._collecting:
            self._collect_queued = False
            running = {(d.app_id, d.release) for d in self.manager.dynos.values()}
            in_use = self.store.slugs_of(running)
            unpacked = in_use | self.store.slugs_to_keep(0)
            keep = in_use | self.store.slugs_to_keep(self.config.slugs_kept_per_app)
            try:
                removed = await asyncio.to_thread(
                    self.slugs.gc, keep, unpacked, self.config.slug_gc_grace
                )
            except OSError:
                log.exception("slug collection failed")
                return
            if removed:
                log.info("slugs removed", count=len(removed))

    def _current(self, app: App) -> Release | None:
        if app.current_release is None:
            return None
        return self.store.release(app, str(app.current_release))

    def _lock(self, app_name: str) -> asyncio.Lock:
        return self._locks.setdefault(app_name, asyncio.Lock())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
