"""Log drains of an app: ``/apps/{app}/log-drains`` as Heroku's Platform API has it.

The drain service lives on the aiohttp application under :data:`DRAINS` (the
daemon puts it there); a missing app or drain is a 404.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dynod.api.views import iso
from dynod.errors import UserInputError
from dynod.logs.drains import DrainService
from dynod.state.drains import Drain
from dynod.state.records import App

DRAINS = web.AppKey("drains", DrainService)
routes = web.RouteTableDef()


def drain_view(app: App, drain: Drain) -> dict[str, Any]:
    return {
        "id": drain.id,
        "url": drain.url,
        "token": drain.token,
        "addon": None,
        "app": {"id": app.id, "name": app.name},
        "created_at": iso(drain.created_at),
        "updated_at": iso(drain.updated_at),
    }


def _app(request: web.Request) -> App:
    return request.app[DRAINS].rows.store.app(request.match_info["app"])


@routes.get("/apps/{app}/log-drains")
async def list_drains(request: web.Request) -> web.Response:
    app = _app(request)
    drains = request.app[DRAINS].rows.for_app(app.id)
    return web.json_response([drain_view(app, d) for d in drains])


@routes.post("/apps/{app}/log-drains")
async def add_drain(request: web.Request) -> web.Response:
    app = _app(request)
    try:
        body = await request.json()
    except ValueError as exc:
        raise UserInputError(f"The request body is not valid JSON: {exc}.") from exc
    url = body.get("url") if isinstance(body, dict) else None
    if not isinstance(url, str) or not url:
        raise UserInputError('Give the drain as {"url": "syslog://HOST:PORT"}.')
    drain = request.app[DRAINS].add(app.id, url)
    return web.json_response(drain_view(app, drain), status=201)


@routes.get("/apps/{app}/log-drains/{ref:.+}")
async def get_drain(request: web.Request) -> web.Response:
    app = _app(request)
    drain = request.app[DRAINS].rows.find(app.id, request.match_info["ref"])
    return web.json_response(drain_view(app, drain))


@routes.delete("/apps/{app}/log-drains/{ref:.+}")
async def remove_drain(request: web.Request) -> web.Response:
    app = _app(request)
    drain = await request.app[DRAINS].remove(app.id, request.match_info["ref"])
    return web.json_response(drain_view(app, drain))
