"""``GET /apps/{app}/metrics?window=SECONDS``: the app's router figures.

Request count and rate, counts per status class and per H code, and
p50/p95/p99 service time in milliseconds, over the last ``window`` seconds
(default 60, at most the registry's span).
"""

from __future__ import annotations

from aiohttp import web

from dynod.api.edge import app_of, edge
from dynod.errors import UserInputError
from dynod.metrics.registry import DEFAULT_WINDOW

routes = web.RouteTableDef()


@routes.get("/apps/{app}/metrics")
async def show_metrics(request: web.Request) -> web.Response:
    e, app = edge(request), app_of(request)
    raw = request.query.get("window", str(DEFAULT_WINDOW))
    if not raw.isdigit() or not 1 <= int(raw) <= e.metrics.span:
        raise UserInputError(
            f"window={raw} is invalid: use a whole number of seconds from 1 to "
            f"{e.metrics.span}."
        )
    return web.json_response(e.metrics.summary(app.name, int(raw)))
