"""What the domain, certificate, maintenance and metrics handlers share.

These handlers live in their own route modules; the daemon stores one
:class:`Edge` on the aiohttp application under :data:`EDGE`.
"""

from __future__ import annotations

import pwd
import socket
import struct
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


def user_of(request: web.Request) -> str:
    """Who is calling: the unix socket's peer user, else ``api``."""
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None and sock.family == socket.AF_UNIX:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        _, uid, _ = struct.unpack("3i", creds)
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return f"uid {uid}"
    return "api"
