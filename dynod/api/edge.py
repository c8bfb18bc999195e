"""What the domain, certificate, maintenance and metrics handlers share.

These handlers live in their own route modules; the daemon stores one
:class:`Edge` on the aiohttp application under :data:`EDGE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from dynod.certs.service import CertService
from dynod.config import Config
from dynod.errors import UserInputError
from dynod.logs.hub import LogHub
from dynod.manager.manager import Manager
from dynod.metrics.registry import Metrics
from dynod.state.db import Store
from dynod.state.records import App


@dataclass(frozen=True)
class Edge:
    config: Config
    store: Store
    manager: Manager
    hub: LogHub
    certs: CertService
    metrics: Metrics


EDGE = web.AppKey("edge", Edge)


def edge(request: web.Request) -> Edge:
    return request.app[EDGE]


def app_of(request: web.Request) -> App:
    return edge(request).store.app(request.match_info["app"])


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; :class:`UserInputError` for anything else."""
    try:
        body = await request.json()
    except ValueError as exc:
        raise UserInputError(f"The request body is not valid JSON: {exc}.") from exc
    if not isinstance(body, dict):
        raise UserInputError("The request body must be a JSON object.")
    return body
