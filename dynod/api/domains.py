"""Custom domains (``/apps/{app}/domains``); maintenance (``PATCH /apps/{app}``).

Shaped like the Heroku Platform API: a domain is ``{id, hostname, kind, cname,
status, acm_status, acm_status_reason, sni_endpoint, app, created_at,
updated_at}``; the list starts with the app's default (``heroku``) domain.
Adding or removing a domain republishes the route table and the certificate
table, and under ACM orders a certificate that covers the new set.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dynod.api.auth import user_of
from dynod.api.edge import Edge, app_of, edge, json_body
from dynod.api.views import app_view, iso
from dynod.certs.names import hostname
from dynod.certs.service import choose
from dynod.errors import UserInputError
from dynod.state import certs as cert_rows
from dynod.state import domains as domain_rows
from dynod.state.domains import Domain
from dynod.state.records import App

routes = web.RouteTableDef()


def domain_view(e: Edge, app: App, domain: Domain | None) -> dict[str, Any]:
    """One domain; ``None`` is the app's default host."""
    default = e.certs.default_host(app)
    host = domain.hostname if domain is not None else default
    rows = cert_rows.for_app(e.store, app.id)
    acm = cert_rows.acm_enabled(e.store, app.id)
    cert = choose(rows, host, acm, e.certs.clock())
    return {
        "id": domain.id if domain is not None else app.id,
        "hostname": host,
        "kind": "custom" if domain is not None else "heroku",
        "cname": default if domain is not None else None,
        "status": "succeeded" if domain is not None else "none",
        "acm_status": domain.acm_status if domain is not None else None,
        "acm_status_reason": domain.acm_status_reason if domain else None,
        "sni_endpoint": {"id": cert.id, "name": cert.name} if cert else None,
        "app": {"id": app.id, "name": app.name},
        "created_at": iso(domain.created_at if domain else app.created_at),
        "updated_at": iso(domain.updated_at if domain else app.updated_at),
    }


@routes.get("/apps/{app}/domains")
async def list_domains(request: web.Request) -> web.Response:
    e, app = edge(request), app_of(request)
    found = [domain_view(e, app, None)]
    found += [domain_view(e, app, d) for d in domain_rows.for_app(e.store, app.id)]
    return web.json_response(found)


@routes.post("/apps/{app}/domains")
async def add_domain(request: web.Request) -> web.Response:
    e, app = edge(request), app_of(request)
    body = await json_body(request)
    host = hostname(body.get("hostname"), e.config.router_domain)
    domain = domain_rows.add(e.store, app.id, host)
    e.hub.emit(app.id, "dynod", "api", f"Add {host} domain by {user_of(request)}")
    e.manager.publish_routes()
    e.certs.domains_changed(app)
    return web.json_response(domain_view(e, app, domain), status=201)


@routes.get("/apps/{app}/domains/{ref}")
async def show_domain(request: web.Request) -> web.Response:
    e, app = edge(request), app_of(request)
    ref = request.match_info["ref"]
    if ref in (app.id, e.certs.default_host(app)):
        return web.json_response(domain_view(e, app, None))
    domain = domain_rows.get(e.store, app.id, ref)
    return web.json_response(domain_view(e, app, domain))


@routes.delete("/apps/{app}/domains/{ref}")
async def remove_domain(request: web.Request) -> web.Response:
    e, app = edge(request), app_of(request)
    ref = request.match_info["ref"]
    if ref in (app.id, e.certs.default_host(app)):
        raise UserInputError(
            f"{e.certs.default_host(app)} is the app's default domain and cannot be "
            "removed."
        )
    domain = domain_rows.remove(e.store, app.id, ref)
    e.hub.emit(
        app.id, "dynod", "api", f"Remove {domain.hostname} domain by {user_of(request)}"
    )
    e.manager.publish_routes()
    e.certs.domains_changed(app)
    return web.json_response(domain_view(e, app, domain))


@routes.patch("/apps/{app}")
async def update_app(request: web.Request) -> web.Response:
    """``{"maintenance": true|false}``: the router answers H80 while it is on."""
    e, app = edge(request), app_of(request)
    body = await json_body(request)
    unknown = sorted(set(body) - {"maintenance"})
    if unknown:
        raise UserInputError(
            f"Unknown app field(s) {', '.join(unknown)}: only maintenance can be "
            "changed here."
        )
    if "maintenance" in body:
        on = body["maintenance"]
        if not isinstance(on, bool):
            raise UserInputError(f"maintenance must be true or false, not {on!r}.")
        if on != app.maintenance:
            app = e.store.update_app(app.name, maintenance=int(on))
            state = "on" if on else "off"
            e.hub.emit(
                app.id,
                "dynod",
                "api",
                f"Maintenance mode {state} by {user_of(request)}",
            )
            e.manager.publish_routes()
    return web.json_response(app_view(app, e.config))
