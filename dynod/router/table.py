"""The route table: which hosts belong to which app, and where its web dynos are.

dynod writes the table to ``routes.json`` (temp file + rename), whole and
versioned::

    {"version": 7,
     "apps": {"myapp": {"hosts": ["myapp.localhost"],
                        "state": "running",
                        "dynos": [{"name": "web.1", "addr": "10.217.0.5",
                                   "port": 5000}],
                        "pages": {"error": "https://example.com/oops.html",
                                  "maintenance": "https://example.com/m.html"}}}}

``pages`` is optional (from the app's ``ERROR_PAGE_URL`` and
``MAINTENANCE_PAGE_URL``): the router never fetches them, it serves a small
page that links and refreshes to them.  Each must be an http(s) URL.

``preboot`` (optional, same shape as ``dynos``) lists web dynos that listen
but must pass the app's health check before they serve.  Only a request
carrying ``Dynod-Preboot-Check: TOKEN NAME``, with the table's top-level
``check_token``, reaches one of them: that is how dynod checks a new dyno
through the router, with the app's own Host, before routing to it.

A file that is not a JSON object with a ``version`` and an ``apps`` object is
rejected as a whole (:class:`RouteTableError`).  Apps are validated one by one:
a bad app entry, or one claiming a host another app already has, is dropped and
named in :attr:`RouteTable.rejected` while the rest of the table stands.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from dynod.errors import InvalidConfig


class RouteTableError(InvalidConfig):
    """The route table file cannot be used at all."""


class AppState(StrEnum):
    """What the router does with a request for the app."""

    RUNNING = "running"  # route to one of ``dynos``
    NOT_DEPLOYED = "not-deployed"  # H81
    NO_WEB = "no-web"  # web=0: H14
    CRASHED = "crashed"  # every web dyno crashed: H10
    BOOTING = "booting"  # hold the request until a dyno is up, else H20
    MAINTENANCE = "maintenance"  # H80


@dataclass(frozen=True, slots=True)
class DynoRoute:
    name: str
    addr: str
    port: int
    # Where the dyno listens; also the key of its connection pool.  Made once
    # here, not per request: every request looks its pool up by it.
    key: tuple[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.addr, self.port))


@dataclass(frozen=True, slots=True)
class AppRoute:
    name: str
    hosts: tuple[str, ...]
    state: AppState
    dynos: tuple[DynoRoute, ...]
    # Page kind ("error", "maintenance") -> URL the client is sent on to.
    pages: Mapping[str, str] = field(default_factory=dict)
    # Booting dynos only dynod's health checks reach.
    preboot: tuple[DynoRoute, ...] = ()

    def checked(self, name: str) -> DynoRoute | None:
        """The dyno a health check names: booting or already serving."""
        for dyno in (*self.preboot, *self.dynos):
            if dyno.name == name:
                return dyno
        return None


@dataclass(frozen=True)
class RouteTable:
    version: int
    apps: Mapping[str, AppRoute]
    by_host: Mapping[str, AppRoute]
    # One sentence per app entry that was dropped, saying why.
    rejected: tuple[str, ...] = field(default=())
    # What dynod's health checks carry; empty: no check is honoured.
    check_token: bytes = b""

    def lookup(self, host: str) -> AppRoute | None:
        """The app answering on ``host`` (already lower-case, port stripped)."""
        return self.by_host.get(host)


EMPTY_TABLE = RouteTable(version=0, apps={}, by_host={})


def parse_table(raw: bytes) -> RouteTable:
    """Parse and validate a ``routes.json`` document.

    Raises :class:`RouteTableError` when the document as a whole is unusable;
    bad app entries are dropped individually and listed in ``rejected``.
    """
    # The envelope must be right, or nothing in it can be trusted.
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RouteTableError(
            f"The route table is not valid JSON ({exc}); keep the previous table "
            "and rewrite the file."
        ) from exc
    if not isinstance(doc, dict):
        raise RouteTableError("The route table must be a JSON object.")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise RouteTableError(
            f"The route table's version {version!r} is not an integer."
        )
    apps_doc = doc.get("apps")
    if not isinstance(apps_doc, dict):
        raise RouteTableError("The route table's 'apps' must be a JSON object.")
    token = doc.get("check_token", "")
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise RouteTableError(
            "The route table's check_token must be a string of letters and digits."
        )

    # Each app stands or falls on its own.
    apps: dict[str, AppRoute] = {}
    by_host: dict[str, AppRoute] = {}
    rejected: list[str] = []
    for name, entry in apps_doc.items():
        try:
            app = _parse_app(name, entry)
        except ValueError as exc:
            rejected.append(str(exc))
            continue
        taken = [h for h in app.hosts if h in by_host]
        if taken:
            rejected.append(
                f"App {name!r} claims host {taken[0]!r}, which app "
                f"{by_host[taken[0]].name!r} already has; the app was dropped."
            )
            continue
        apps[name] = app
        by_host.update(dict.fromkeys(app.hosts, app))
    return RouteTable(version, apps, by_host, tuple(rejected), token.encode())


def _parse_app(name: str, entry: Any) -> AppRoute:
    if not isinstance(entry, dict):
        raise ValueError(f"App {name!r} is not a JSON object; the app was dropped.")
    hosts = entry.get("hosts")
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
        raise ValueError(
            f"App {name!r} has hosts {hosts!r}, not a list of host names; "
            "the app was dropped."
        )
    try:
        state = AppState(str(entry.get("state")))
    except ValueError:
        raise ValueError(
            f"App {name!r} has state {entry.get('state')!r}, not one of "
            f"{', '.join(s.value for s in AppState)}; the app was dropped."
        ) from None
    dynos_doc = entry.get("dynos", [])
    if not isinstance(dynos_doc, list):
        raise ValueError(f"App {name!r} has dynos that are not a list; dropped.")
    dynos = tuple(_parse_dyno(name, d) for d in dynos_doc)
    preboot_doc = entry.get("preboot", [])
    if not isinstance(preboot_doc, list):
        raise ValueError(f"App {name!r} has preboot that is not a list; dropped.")
    preboot = tuple(_parse_dyno(name, d) for d in preboot_doc)
    pages = _parse_pages(name, entry.get("pages", {}))
    lowered = tuple(h.lower() for h in hosts)
    return AppRoute(name, lowered, state, dynos, pages, preboot)


def _parse_pages(app: str, doc: Any) -> dict[str, str]:
    if not isinstance(doc, dict):
        raise ValueError(f"App {app!r} has pages that are not an object; dropped.")
    pages: dict[str, str] = {}
    for kind, url in doc.items():
        if kind not in PAGE_KINDS or not isinstance(url, str) or not _URL.match(url):
            raise ValueError(
                f"App {app!r} has page {kind!r} = {url!r}; pages are 'error' or "
                "'maintenance' with an http(s) URL. The app was dropped."
            )
        pages[kind] = url
    return pages


PAGE_KINDS = ("error", "maintenance")
_TOKEN = re.compile(r"[A-Za-z0-9]{0,128}")
# An absolute http(s) URL of visible characters, at most 2048 of them.
_URL = re.compile(r"https?://[!-~]{1,2040}\Z")


def valid_page_url(url: str) -> bool:
    """Would the router accept ``url`` as an app's error or maintenance page?"""
    return bool(_URL.match(url))


def _parse_dyno(app: str, doc: Any) -> DynoRoute:
    if not isinstance(doc, dict):
        raise ValueError(f"App {app!r} has a dyno entry {doc!r} that is not an object.")
    name, addr, port = doc.get("name"), doc.get("addr"), doc.get("port")
    if not isinstance(name, str) or not name:
        raise ValueError(f"App {app!r} has a dyno without a name; the app was dropped.")
    try:
        if not isinstance(addr, str):
            raise ValueError(addr)
        ipaddress.IPv4Address(addr)
    except ValueError:
        raise ValueError(
            f"Dyno {name!r} of app {app!r} has address {addr!r}, not an IPv4 "
            "address; the app was dropped."
        ) from None
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ValueError(
            f"Dyno {name!r} of app {app!r} has port {port!r}, not 1-65535; "
            "the app was dropped."
        )
    return DynoRoute(name, str(addr), port)
