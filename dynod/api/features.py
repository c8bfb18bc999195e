"""App features (``features``, ``features:enable``, ``features:disable``).

Shaped like the Heroku Platform API's app-feature resource: ``GET
/apps/{app}/features``, ``GET`` and ``PATCH /apps/{app}/features/{name}`` with
``{"enabled": true}``.  Toggling a feature never restarts dynos; it applies to
the next rollout.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dynod.errors import UserInputError
from dynod.logs.hub import LogHub
from dynod.state import features
from dynod.state.db import Store
from dynod.state.records import App

routes = web.RouteTableDef()
STORE = web.AppKey("features_store", Store)
HUB = web.AppKey("features_hub", LogHub)


def _view(name: str, enabled: bool) -> dict[str, Any]:
    feature = features.KNOWN[name]
    return {
        "id": name,
        "name": name,
        "description": feature.description,
        "enabled": enabled,
        "state": "general",
        "doc_url": None,
    }


def _app(request: web.Request) -> App:
    return request.app[STORE].app(request.match_info["app"])


@routes.get("/apps/{app}/features")
async def list_features(request: web.Request) -> web.Response:
    store = request.app[STORE]
    states = features.states(store, _app(request).id)
    return web.json_response([_view(n, on) for n, on in sorted(states.items())])


@routes.get("/apps/{app}/features/{name}")
async def show_feature(request: web.Request) -> web.Response:
    store = request.app[STORE]
    name = request.match_info["name"]
    return web.json_response(
        _view(name, features.enabled(store, _app(request).id, name))
    )


@routes.patch("/apps/{app}/features/{name}")
async def update_feature(request: web.Request) -> web.Response:
    app = _app(request)
    name = request.match_info["name"]
    try:
        body = await request.json()
    except ValueError as exc:
        raise UserInputError(f"The request body is not valid JSON: {exc}.") from exc
    if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
        raise UserInputError('Send {"enabled": true} or {"enabled": false}.')
    features.set_enabled(request.app[STORE], app.id, name, body["enabled"])
    word = "enabled" if body["enabled"] else "disabled"
    request.app[HUB].emit(app.id, "dynod", "api", f"Feature {name} {word}")
    return web.json_response(_view(name, body["enabled"]))
