"""The OpenAPI description of the API, derived from the routes themselves.

Each route's handler docstring gives the operation's summary (first line) and
description (the rest), or else its name does; path parameters come from the
route's pattern.  dynod
serves the result at ``GET /openapi.json``; ``dynod openapi`` prints it, and
``dynod/api/openapi.json`` in the repository is that output, kept equal by a
test so the description never drifts from the code.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from aiohttp import web

from dynod import __version__

_PARAM_RE = re.compile(r"\{(\w+)\}")


def describe(app: web.Application) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        info = route.resource.get_info()
        path = info.get("path") or info.get("formatter")
        if not path:
            continue
        name = getattr(route.handler, "__name__", "handler")
        # A handler without a docstring is summarised from its name.
        doc = inspect.getdoc(route.handler) or name.replace("_", " ").capitalize() + "."
        summary, _, description = doc.partition("\n")
        operation: dict[str, Any] = {
            "operationId": name,
            "summary": summary.strip(),
            "responses": {
                "default": {
                    "description": "JSON on success; errors are "
                    '{"id": "...", "message": "..."} with the HTTP status.'
                }
            },
        }
        if description.strip():
            operation["description"] = description.strip()
        params = _PARAM_RE.findall(path)
        if params:
            operation["parameters"] = [
                {
                    "name": p,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                }
                for p in params
            ]
        paths.setdefault(path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dynod API",
            "version": __version__,
            "description": "Shaped like the Heroku Platform API v3.",
        },
        "paths": dict(sorted(paths.items())),
    }
