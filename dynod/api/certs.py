"""TLS certificates: uploaded ones (``/sni-endpoints``) and ACM (``/acm``).

``POST /apps/{app}/sni-endpoints {certificate_chain, private_key}`` checks the
pair (:func:`dynod.certs.pem.inspect`) and serves it for every host of the app
it covers.  ``POST``/``PATCH``/``DELETE /apps/{app}/acm`` enable, refresh and
disable automatic certificates; ``GET /apps/{app}/acm`` shows them per domain.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dynod.api.domains import domain_view
from dynod.api.edge import Edge, app_of, edge, json_body
from dynod.api.views import iso
from dynod.errors import UserInputError
from dynod.state import certs as cert_rows
from dynod.state import domains as domain_rows
from dynod.state.certs import CertRecord
from dynod.state.records import App

routes = web.RouteTableDef()


def cert_view(e: Edge, app: App, cert: CertRecord) -> dict[str, Any]:
    served = [
        view["hostname"]
        for view in (
            domain_view(e, app, d) for d in domain_rows.for_app(e.store, app.id)
        )
        if view["sni_endpoint"] and view["sni_endpoint"]["id"] == cert.id
    ]
    return {
        "id": cert.id,
        "name": cert.name,
        "kind": cert.kind.value,
        "certificate_chain": cert.chain,
        "ssl_cert": {
            "cert_domains": list(cert.domains),
            "starts_at": iso(cert.not_before),
            "expires_at": iso(cert.not_after),
            "acm": cert.kind.value == "acme",
        },
        "domains": served,
        "app": {"id": app.id, "name": app.name},
        "created_at": iso(cert.created_at),
        "updated_at": iso(cert.updated_at),
    }


@routes.get("/apps/{app}/sni-endpoints")
async def list_certs(request: web.Request) -> web.Response:
    e, app = edge(request), app_of(request)
    rows = cert_rows.for_app(e.store, app.id)
    return web.json_response([cert_view(e, app, c) for c in rows])


@routes.post("/apps/{app}/sni-endpoints")
async def add_cert(request: web.Request) -> web.Response:
    e, app = edge(request), app_of(request)
    body = await json_body(request)
    chain, key = body.get("certificate_chain"), body.get("private_key")
    if not isinstance(chain, str) or not isinstance(key, str):
        raise UserInputError(
            "Send the certificate and its key as "
            '{"certificate_chain": "PEM...", "private_key": "PEM..."}.'
        )
    cert = e.certs.upload(app, chain, key)
    return web.json_response(cert_view(e, app, cert), status=201)


@routes.get("/apps/{app}/sni-endpoints/{ref}")
async def show_cert(request: web.Request) -> web.Response:
    e, app = edge(request), app_of(request)
    cert = cert_rows.get(e.store, app.id, request.match_info["ref"])
    return web.json_response(cert_view(e, app, cert))


@routes.delete("/apps/{app}/sni-endpoints/{ref}")
async def remove_cert(request: web.Request) -> web.Response:
    e, app = edge(request), app_of(request)
    cert = e.certs.remove(app, request.match_info["ref"])
    return web.json_response(cert_view(e, app, cert))


def acm_view(e: Edge, app: App) -> dict[str, Any]:
    return {
        "acm": cert_rows.acm_enabled(e.store, app.id),
        "domains": [
            domain_view(e, app, d) for d in domain_rows.for_app(e.store, app.id)
        ],
    }


@routes.get("/apps/{app}/acm")
async def show_acm(request: web.Request) -> web.Response:
    e, app = edge(request), app_of(request)
    return web.json_response(acm_view(e, app))


@routes.post("/apps/{app}/acm")
async def enable_acm(request: web.Request) -> web.Response:
    e, app = edge(request), app_of(request)
    e.certs.enable_acm(app)
    return web.json_response(acm_view(e, app))


@routes.patch("/apps/{app}/acm")
async def refresh_acm(request: web.Request) -> web.Response:
    e, app = edge(request), app_of(request)
    if not cert_rows.acm_enabled(e.store, app.id):
        raise UserInputError(
            f"Automatic certificates are off for {app.name}: run "
            "`dynoctl certs:auto:enable` first."
        )
    e.certs.refresh_acm(app)
    return web.json_response(acm_view(e, app))


@routes.delete("/apps/{app}/acm")
async def disable_acm(request: web.Request) -> web.Response:
    e, app = edge(request), app_of(request)
    e.certs.disable_acm(app)
    return web.json_response(acm_view(e, app))
