"""Who may call the API, and the ``/oauth/authorizations`` resource.

The unix socket is guarded by the file system (mode 0660, root and the
``dynod`` group), so requests on it need nothing more.  Requests that arrive on
the TCP listener (``--api-listen``) must carry ``Authorization: Bearer TOKEN``
with a token made by ``dynoctl authorizations:create`` — the header the
official ``heroku`` CLI sends for ``HEROKU_API_KEY``; HTTP Basic with the token
as password (the CLI's netrc form) is accepted too.  Tokens can only be made
and revoked over the unix socket, so a stolen token cannot mint others.
"""

from __future__ import annotations

import base64
import binascii
import pwd
import socket
import struct
from collections.abc import Awaitable, Callable

from aiohttp import web

from dynod.api.views import iso
from dynod.errors import DynodError
from dynod.state import authorizations
from dynod.state.db import Store

routes = web.RouteTableDef()
STORE = web.AppKey("auth_store", Store)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Unauthorized(DynodError):
    status = 401
    error_id = "unauthorized"


class Forbidden(DynodError):
    status = 403
    error_id = "forbidden"


def _unix_socket(request: web.Request) -> socket.socket | None:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    return sock if sock is not None and sock.family == socket.AF_UNIX else None


def on_unix_socket(request: web.Request) -> bool:
    return _unix_socket(request) is not None


def user_of(request: web.Request) -> str:
    """Who is calling: the unix socket's peer user (SO_PEERCRED), else ``api``."""
    sock = _unix_socket(request)
    if sock is None:
        return "api"
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    _, uid, _ = struct.unpack("3i", creds)
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip()).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


@web.middleware
async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not on_unix_socket(request):
        token = _token(request)
        if token is None or not authorizations.check(request.app[STORE], token):
            raise Unauthorized(
                "A valid API token is required on the TCP listener: create one with "
                "`dynoctl authorizations:create` and send it as "
                "`Authorization: Bearer TOKEN` (DYNOD_API_TOKEN for dynoctl)."
            )
    return await handler(request)


def _view(auth: authorizations.Authorization) -> dict[str, object]:
    return {
        "id": auth.id,
        "description": auth.description,
        "created_at": iso(auth.created_at),
        "scope": ["global"],
    }


def _local_only(request: web.Request) -> None:
    if not on_unix_socket(request):
        raise Forbidden(
            "Authorizations can be made and revoked only on the local API socket "
            "(run dynoctl on the dynod host)."
        )


@routes.get("/oauth/authorizations")
async def list_authorizations(request: web.Request) -> web.Response:
    """List API tokens (without the tokens themselves)."""
    store = request.app[STORE]
    return web.json_response([_view(a) for a in authorizations.list_all(store)])


@routes.post("/oauth/authorizations")
async def create_authorization(request: web.Request) -> web.Response:
    """Create an API token; the response is the only place the token appears.

    Body: ``{"description": "..."}`` (optional).  Local socket only.
    """
    _local_only(request)
    body = await request.json() if request.can_read_body else {}
    description = body.get("description", "") if isinstance(body, dict) else ""
    auth, token = authorizations.create(request.app[STORE], str(description))
    view = _view(auth)
    view["access_token"] = {"token": token, "expires_in": None}
    return web.json_response(view, status=201)


@routes.delete("/oauth/authorizations/{id}")
async def revoke_authorization(request: web.Request) -> web.Response:
    """Revoke an API token.  Local socket only."""
    _local_only(request)
    auth = authorizations.revoke(request.app[STORE], request.match_info["id"])
    return web.json_response(_view(auth))
