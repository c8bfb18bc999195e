"""The API server: aiohttp handlers over the unix socket (and optional TCP).

Handlers validate input first (:mod:`dynod.validation`), then act through the
release pipeline or the manager; any :class:`~dynod.errors.DynodError` becomes a
JSON error ``{"id": ..., "message": ...}`` with the error's HTTP status, and the
state is left as it was.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from dynod import validation
from dynod.api import auth, views
from dynod.api import certs as cert_api
from dynod.api import domains as domain_api
from dynod.api import drains as drain_api
from dynod.api import features as features_api
from dynod.api import metrics as metrics_api
from dynod.api.attach import bridge
from dynod.api.openapi import describe
from dynod.config import Config
from dynod.errors import (
    Conflict,
    DynodError,
    InvalidArchive,
    NotFound,
    UserInputError,
)
from dynod.logs.hub import LogHub
from dynod.logs.store import HistoryView
from dynod.manager.manager import Manager
from dynod.manager.states import ONE_OFF_TTL_MAX
from dynod.releases.output import read_finished
from dynod.releases.service import Releases
from dynod.runtime.spec import DEFAULT_SIZE
from dynod.state.db import Store
from dynod.state.records import App, FormationEntry

log = structlog.get_logger("dynod.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
routes = web.RouteTableDef()


class Api:
    """The objects handlers work with, stored on the aiohttp application."""

    def __init__(
        self,
        config: Config,
        store: Store,
        manager: Manager,
        releases: Releases,
        hub: LogHub,
    ) -> None:
        self.config = config
        self.store = store
        self.manager = manager
        self.releases = releases
        self.hub = hub


API = web.AppKey("api", Api)


def make_app(api: Api) -> web.Application:
    # Errors outermost, so a refused token gets the same JSON error shape.
    app = web.Application(
        middlewares=[_errors, auth.require_token], client_max_size=1024**2
    )
    app[API] = api
    if api is not None:
        app[auth.STORE] = api.store
    app.add_routes(routes)
    app.add_routes(auth.routes)
    app.add_routes(drain_api.routes)
    app.add_routes(domain_api.routes)
    app.add_routes(cert_api.routes)
    app.add_routes(metrics_api.routes)
    if api is not None:
        app[features_api.STORE], app[features_api.HUB] = api.store, api.hub
    app.add_routes(features_api.routes)
    app.router.add_get("/openapi.json", serve_openapi)
    return app


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DynodError as exc:
        return web.json_response(
            {"id": exc.error_id, "message": str(exc)}, status=exc.status
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response(
            {
                "id": "not_found" if exc.status == 404 else "bad_request",
                "message": exc.reason,
            },
            status=exc.status,
        )


async def serve_openapi(request: web.Request) -> web.Response:
    """The OpenAPI description of this API."""
    return web.json_response(describe(request.app))


def _api(request: web.Request) -> Api:
    return request.app[API]


def _app(request: web.Request) -> App:
    return _api(request).store.app(request.match_info["app"])


def _user(request: web.Request) -> str:
    return auth.user_of(request)


async def _json(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise UserInputError(f"The request body is not valid JSON: {exc}.") from exc


# Apps


@routes.get("/apps")
async def list_apps(request: web.Request) -> web.Response:
    """List apps."""
    api = _api(request)
    return web.json_response([views.app_view(a, api.config) for a in api.store.apps()])


@routes.post("/apps")
async def create_app(request: web.Request) -> web.Response:
    """Create an app.

    Body: ``{"name": "myapp"}``; 201 with the app, 422 for an invalid name, 409
    when the name is taken.
    """
    api = _api(request)
    body = await _json(request)
    name = validation.app_name(body.get("name") if isinstance(body, dict) else None)
    app = api.store.create_app(name)
    api.hub.emit(app.id, "dynod", "api", f"App created by {_user(request)}")
    api.manager.publish_routes()
    return web.json_response(views.app_view(app, api.config), status=201)


@routes.get("/apps/{app}")
async def show_app(request: web.Request) -> web.Response:
    """Show an app, with when its current release was made."""
    api = _api(request)
    app = _app(request)
    released = None
    if app.current_release is not None:
        released = api.store.release(app, str(app.current_release)).created_at
    return web.json_response(views.app_view(app, api.config, released))


@routes.delete("/apps/{app}")
async def destroy_app(request: web.Request) -> web.Response:
    """Destroy an app: its dynos stop, its state and logs go."""
    api = _api(request)
    app = _app(request)
    await api.manager.destroy_app(app)
    api.store.delete_app(app.name)
    api.hub.remove_app(app.id)
    api.manager.publish_routes()
    await api.releases.builder.remove_cache(app.name)
    api.releases.collect_slugs_soon()
    return web.json_response(views.app_view(app, api.config))


@routes.get("/apps/{app}/settings")
async def show_settings(request: web.Request) -> web.Response:
    return web.json_response(asdict(_app(request).settings))


@routes.patch("/apps/{app}/settings")
async def update_settings(request: web.Request) -> web.Response:
    api = _api(request)
    app = _app(request)
    settings = validation.settings_changes(await _json(request), app.settings)
    app = api.store.update_app(app.name, settings=settings)
    return web.json_response(asdict(app.settings))


# Config vars


@routes.get("/apps/{app}/config-vars")
async def show_config(request: web.Request) -> web.Response:
    """Show an app's config vars as one object."""
    return web.json_response(_app(request).config)


@routes.patch("/apps/{app}/config-vars")
async def update_config(request: web.Request) -> web.Response:
    """Set and unset config vars; a new release rolls the dynos.

    Body: ``{"KEY": "value", "OLD": null}`` (null unsets).  Returns the whole
    config.
    """
    api = _api(request)
    app = _app(request)
    new = validation.config_changes(await _json(request), app.config)
    await api.releases.set_config(app, new, _user(request))
    return web.json_response(api.store.app(app.name).config)


# Builds


@routes.post("/apps/{app}/builds")
async def create_build(request: web.Request) -> web.Response:
    """Upload source (a tar.gz body) and start a build.

    Query: ``buildpack`` (a shipped name or a path on the host) and
    ``description``.  201 with the pending build; follow its
    ``output_stream_url`` for the output.
    """
    api = _api(request)
    app = _app(request)
    # Stream the upload to disk: sources can be far bigger than memory allows.
    incoming = api.config.state_dir / "incoming"
    incoming.mkdir(exist_ok=True)
    fd, name = tempfile.mkstemp(dir=incoming, suffix=".tgz")
    size = 0
    with os.fdopen(fd, "wb") as f:
        async for chunk in request.content.iter_chunked(256 * 1024):
            size += len(chunk)
            if size > api.config.slug_max_bytes:
                f.close()
                os.unlink(name)
                raise InvalidArchive(
                    f"The source archive is over {api.config.slug_max_bytes} bytes: "
                    "add large files that the build does not need to .slugignore."
                )
            f.write(chunk)
    if size == 0:
        os.unlink(name)
        raise InvalidArchive("The request held no source archive: send a tar.gz body.")
    buildpack = request.query.get("buildpack") or None
    build = api.releases.deploy(
        app,
        Path(name),
        buildpack=buildpack,
        description=request.query.get("description", ""),
        user=_user(request),
    )
    return web.json_response(views.build_view(app, build), status=201)


@routes.get("/apps/{app}/builds")
async def list_builds(request: web.Request) -> web.Response:
    """List an app's builds."""
    app = _app(request)
    builds = _api(request).store.builds(app)
    return web.json_response([views.build_view(app, b) for b in builds])


@routes.get("/apps/{app}/builds/{id}")
async def show_build(request: web.Request) -> web.Response:
    """Show a build."""
    app = _app(request)
    build = _api(request).store.build(app, request.match_info["id"])
    return web.json_response(views.build_view(app, build))


@routes.delete("/apps/{app}/builds/{id}")
async def cancel_build(request: web.Request) -> web.Response:
    """Cancel a running build."""
    api = _api(request)
    app = _app(request)
    build = api.store.build(app, request.match_info["id"])
    await api.releases.cancel_build(build)
    return web.json_response(views.build_view(app, api.store.build(app, build.id)))


@routes.get("/apps/{app}/builds/{id}/output")
async def build_output(request: web.Request) -> web.StreamResponse:
    """Stream a build's output (text) from the start until it ends."""
    api = _api(request)
    app = _app(request)
    build = api.store.build(app, request.match_info["id"])
    return await _stream_output(request, build.id, "builds")


@routes.get("/apps/{app}/releases/{ref}/output")
async def release_output(request: web.Request) -> web.StreamResponse:
    """Stream a release's release-phase output (text)."""
    api = _api(request)
    release = api.store.release(_app(request), request.match_info["ref"])
    return await _stream_output(request, release.id, "releases")


async def _stream_output(
    request: web.Request, ident: str, kind: str
) -> web.StreamResponse:
    api = _api(request)
    live = api.releases.outputs.get(ident)
    lines = (
        live.follow()
        if live is not None
        else read_finished(api.releases.output_path(kind, ident))
    )
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await response.prepare(request)
    async for line in lines:
        await response.write(line.encode() + b"\n")
    await response.write_eof()
    return response


# Releases


@routes.get("/apps/{app}/releases")
async def list_releases(request: web.Request) -> web.Response:
    """List releases, oldest first; ``limit`` keeps the newest N."""
    app = _app(request)
    try:
        limit = int(request.query["limit"]) if "limit" in request.query else None
    except ValueError as exc:
        raise UserInputError("limit must be a whole number.") from exc
    releases = _api(request).store.releases(app, limit)
    return web.json_response([views.release_view(app, r) for r in releases])


@routes.get("/apps/{app}/releases/{ref}")
async def show_release(request: web.Request) -> web.Response:
    """Show a release by version (``v3`` or ``3``) or id."""
    app = _app(request)
    release = _api(request).store.release(app, request.match_info["ref"])
    return web.json_response(views.release_view(app, release))


@routes.post("/apps/{app}/releases")
async def rollback(request: web.Request) -> web.Response:
    """Roll back: a new release with the target's slug and config.

    Body: ``{"release": "v3"}`` (version or id).
    """
    api = _api(request)
    app = _app(request)
    body = await _json(request)
    ref = body.get("release") if isinstance(body, dict) else None
    if not isinstance(ref, str | int) or isinstance(ref, bool):
        raise UserInputError('Name the release to roll back to: {"release": "v3"}.')
    target = api.store.release(app, str(ref))
    release = await api.releases.rollback(app, target, _user(request))
    app = api.store.app(app.name)
    return web.json_response(views.release_view(app, release), status=201)


# Formation


def _formation(api: Api, app: App) -> list[dict[str, Any]]:
    current = (
        api.store.release(app, str(app.current_release))
        if app.current_release is not None
        else None
    )
    types = current.process_types if current else {}
    return [
        views.formation_view(e, types.get(e.type)) for e in api.store.formation(app)
    ]


@routes.get("/apps/{app}/formation")
async def show_formation(request: web.Request) -> web.Response:
    api = _api(request)
    return web.json_response(_formation(api, _app(request)))


@routes.patch("/apps/{app}/formation")
async def update_formation(request: web.Request) -> web.Response:
    api = _api(request)
    app = _app(request)
    body = await _json(request)
    updates = body.get("updates") if isinstance(body, dict) else None
    if not isinstance(updates, list) or not updates:
        raise UserInputError(
            'Send the changes as {"updates": [{"type": "web", "quantity": 2}]}.'
        )
    current = {e.type: e for e in api.store.formation(app)}
    release = (
        api.store.release(app, str(app.current_release))
        if app.current_release is not None
        else None
    )
    types = set(release.process_types) if release else set()
    entries: list[FormationEntry] = []
    # Validate every update before applying any: a bad one changes nothing.
    for update in updates:
        if not isinstance(update, dict):
            raise UserInputError(f"Formation update {update!r} is not an object.")
        ptype = validation.process_type(update.get("type"))
        if ptype not in types and ptype not in current:
            raise NotFound(
                f"Couldn't find that process type ({ptype}) in {app.name}: the "
                f"current release defines {', '.join(sorted(types)) or 'none'}."
            )
        old = current.get(ptype, FormationEntry(ptype, 0, DEFAULT_SIZE))
        quantity = (
            validation.quantity(update["quantity"])
            if "quantity" in update
            else old.quantity
        )
        size = (
            validation.size(update["size"], api.config.sizes)
            if "size" in update
            else old.size
        )
        entries.append(FormationEntry(ptype, quantity, size))
    api.store.set_formation(app, entries)
    scaled = ", ".join(f"{e.type}@{e.quantity}:{e.size}" for e in entries)
    api.hub.emit(app.id, "dynod", "api", f"Scaled to {scaled} by {_user(request)}")
    await api.manager.reconcile(app.name)
    return web.json_response(_formation(api, app))


# Dynos


@routes.get("/apps/{app}/dynos")
async def list_dynos(request: web.Request) -> web.Response:
    api = _api(request)
    app = _app(request)
    out = []
    for dyno in api.manager.app_dynos(app):
        out.append(views.dyno_view(app, dyno, await api.manager.memory(dyno)))
    return web.json_response(out)


@routes.post("/apps/{app}/dynos")
async def run_dyno(request: web.Request) -> web.Response:
    api = _api(request)
    app = _app(request)
    body = await _json(request)
    if not isinstance(body, dict) or not isinstance(body.get("command"), str):
        raise UserInputError('Send the command to run: {"command": "bash"}.')
    env = body.get("env") or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise UserInputError("env must map names to string values.")
    dyno = await api.manager.run(
        app,
        body["command"],
        env=env,
        size=validation.size(body.get("size") or DEFAULT_SIZE, api.config.sizes),
        attach=bool(body.get("attach")),
        tty=bool(body.get("tty")),
        time_to_live=_time_to_live(body.get("time_to_live")),
    )
    return web.json_response(views.dyno_view(app, dyno, None), status=201)


def _time_to_live(value: object) -> float:
    """A one-off's ``time_to_live`` in seconds: 1 to 86400, 86400 if absent."""
    if value is None:
        return ONE_OFF_TTL_MAX
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserInputError(
            f"time_to_live={value!r} is invalid: use a number of seconds from 1 "
            f"to {ONE_OFF_TTL_MAX:g}."
        )
    if not 1 <= value <= ONE_OFF_TTL_MAX:
        raise UserInputError(
            f"time_to_live={value:g} is out of range: use 1 to "
            f"{ONE_OFF_TTL_MAX:g} seconds (24 hours)."
        )
    return float(value)


@routes.get("/apps/{app}/dynos/{dyno}/attach")
async def attach_dyno(request: web.Request) -> web.StreamResponse:
    api = _api(request)
    app = _app(request)
    dyno = api.manager.find(app, request.match_info["dyno"])
    if not dyno.attached or dyno.handle is None or dyno.handle.attach_fd is None:
        raise NotFound(f"Dyno {dyno.name} is not waiting for a client to attach.")
    if dyno.client_attached:
        raise Conflict(f"Dyno {dyno.name} already has a client attached.")
    dyno.client_attached = True
    ws = web.WebSocketResponse()
    try:
        await ws.prepare(request)
        await bridge(ws, api.manager, dyno)
    finally:
        api.manager.detach(dyno)
    return ws


@routes.delete("/apps/{app}/dynos")
async def restart_all(request: web.Request) -> web.Response:
    api = _api(request)
    app = _app(request)
    names = await api.manager.restart(app)
    api.hub.emit(app.id, "dynod", "api", f"Restart all dynos by {_user(request)}")
    return web.json_response({"restarted": names}, status=202)


@routes.delete("/apps/{app}/dynos/{dyno}")
async def restart_one(request: web.Request) -> web.Response:
    api = _api(request)
    app = _app(request)
    target = request.match_info["dyno"]
    names = await api.manager.restart(app, target)
    api.hub.emit(app.id, "dynod", "api", f"Restart {target} by {_user(request)}")
    return web.json_response({"restarted": names}, status=202)


@routes.post("/apps/{app}/dynos/{dyno}/actions/stop")
async def stop_dyno(request: web.Request) -> web.Response:
    api = _api(request)
    app = _app(request)
    target = request.match_info["dyno"]
    names = await api.manager.stop(app, target)
    api.hub.emit(app.id, "dynod", "api", f"Stop {target} by {_user(request)}")
    return web.json_response({"stopped": names}, status=202)


# Logs

# How long a live tail waits for a line before checking its client is there.
_TAIL_IDLE = 5.0


@routes.get("/apps/{app}/log-stream")
async def log_stream(request: web.Request) -> web.StreamResponse:
    api = _api(request)
    app = _app(request)
    query = request.query
    try:
        lines = int(query.get("lines", "100"))
    except ValueError as exc:
        raise UserInputError("lines must be a whole number.") from exc
    if not 0 <= lines <= 100_000:
        raise UserInputError(f"lines={lines} is out of range: use 0 to 100000.")
    source = query.get("source") or None
    if source not in (None, "app", "dynod"):
        raise UserInputError(f"Source {source!r} is unknown: use app or dynod.")
    dyno, ptype = query.get("dyno") or None, query.get("type") or None
    tail = query.get("tail", "false").lower() in ("1", "true", "yes")

    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await response.prepare(request)
    # History up to now and the live lines after it, with nothing between the
    # two and nothing in both: no await separates these calls.
    history = api.hub.history(app.id)
    live = api.hub.subscribe(app.id, source, dyno, ptype) if tail else None
    try:
        if lines:
            # A filtered read may scan far back: off the event loop, so dynos,
            # drains and other requests carry on meanwhile.
            recent = await asyncio.to_thread(
                _recent_body, history, lines, source, dyno, ptype
            )
            if recent:
                await response.write(recent)
        if live is not None:
            async for line in live.lines(idle=_TAIL_IDLE):
                if line:
                    await response.write(line.encode() + b"\n")
                elif request.transport is None or request.transport.is_closing():
                    # A client that left is noticed only on a write; on a
                    # quiet app that could be never.
                    return response
    finally:
        if live is not None:
            api.hub.unsubscribe(app.id, live)
    await response.write_eof()
    return response


def _recent_body(
    history: HistoryView,
    lines: int,
    source: str | None,
    dyno: str | None,
    ptype: str | None,
) -> bytes:
    """The last ``lines`` lines passing the filters, as a response body."""
    recent = history.last(lines, source, dyno, ptype)
    return ("\n".join(recent) + "\n").encode() if recent else b""


@routes.post("/apps/{app}/log-sessions")
async def log_session(request: web.Request) -> web.Response:
    app = _app(request)
    body = await _json(request)
    if not isinstance(body, dict):
        body = {}
    params = {
        "lines": str(body.get("lines", 100)),
        "tail": "true" if body.get("tail") else "false",
    }
    for key in ("source", "dyno", "type"):
        if body.get(key):
            params[key] = str(body[key])
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return web.json_response(
        {
            "id": os.urandom(8).hex(),
            "logplex_url": f"/apps/{app.name}/log-stream?{query}",
        },
        status=201,
    )
