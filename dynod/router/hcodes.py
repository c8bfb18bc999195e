"""Heroku's router error codes, as data, and the pages the client sees.

Each code has a fixed description (it appears verbatim in the log line's
``desc="..."``), an HTTP status and a log level.  The router never invents a code
outside this table, so tests and docs can read the whole vocabulary here.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Level(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class HCode:
    code: str
    desc: str
    status: int
    level: Level


def _table(*codes: HCode) -> dict[str, HCode]:
    return {c.code: c for c in codes}


# Statuses and levels follow Heroku's router: 503 unless noted, ``info`` for the
# maintenance and blank-app codes, ``warning`` for client-side interruptions.
HCODES: dict[str, HCode] = _table(
    HCode("H10", "App crashed", 503, Level.ERROR),
    HCode("H11", "Backlog too deep", 503, Level.ERROR),
    HCode("H12", "Request timeout", 503, Level.ERROR),
    HCode("H13", "Connection closed without response", 503, Level.ERROR),
    HCode("H14", "No web processes running", 503, Level.ERROR),
    HCode("H15", "Idle connection", 503, Level.ERROR),
    HCode("H17", "Poorly formatted HTTP response", 503, Level.ERROR),
    HCode("H18", "Server Request Interrupted", 503, Level.ERROR),
    HCode("H19", "Backend connection timeout", 503, Level.ERROR),
    HCode("H20", "App boot timeout", 503, Level.ERROR),
    HCode("H21", "Backend connection refused", 503, Level.ERROR),
    HCode("H25", "HTTP Restriction", 502, Level.ERROR),
    HCode("H26", "Request Error", 400, Level.ERROR),
    HCode("H27", "Client Request Interrupted", 499, Level.WARNING),
    HCode("H28", "Client Connection Idle", 499, Level.WARNING),
    HCode("H32", "TLS Certificate Mismatch", 495, Level.ERROR),
    HCode("H80", "Maintenance mode", 503, Level.INFO),
    HCode("H81", "Blank app", 503, Level.INFO),
    HCode("H99", "Platform error", 503, Level.ERROR),
)

_REASONS = {
    400: b"Bad Request",
    404: b"Not Found",
    417: b"Expectation Failed",
    495: b"SSL Certificate Error",
    499: b"Client Closed Request",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
}

_TEMPLATE = (
    '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title>'
    "</head>\n<body><h1>{title}</h1>\n<p>{text}</p></body></html>\n"
)

_APP_ERROR = _TEMPLATE.format(
    title="Application error",
    text="An error occurred in the application and your page could not be served. "
    "If you are the application owner, check your logs for details.",
)
_MAINTENANCE = _TEMPLATE.format(
    title="Offline for maintenance",
    text="This app is undergoing maintenance right now. Please check back later.",
)
_BAD_REQUEST = _TEMPLATE.format(
    title="Bad request", text="The request could not be understood."
)
_CERT_MISMATCH = _TEMPLATE.format(
    title="SSL certificate error",
    text="The host you asked for is not the one this connection was opened for.",
)
_NO_SUCH_APP = _TEMPLATE.format(
    title="No such app",
    text="There is no app configured at that hostname.",
)


def page_for(code: HCode, pages: Mapping[str, str] | None = None) -> bytes:
    """The HTML body the client gets for ``code``.

    ``pages`` holds the app's own page URLs (``error``, ``maintenance``): the
    client gets a page that refreshes to the URL and links to it, so the
    router never fetches anything per request.
    """
    if pages:
        kind = "maintenance" if code.code == "H80" else "error"
        url = pages.get(kind)
        if url is not None and code.status == 503:
            return _redirect_page(url)
    if code.code == "H80":
        return _MAINTENANCE.encode()
    if code.code == "H32":
        return _CERT_MISMATCH.encode()
    if code.status == 400:
        return _BAD_REQUEST.encode()
    return _APP_ERROR.encode()


def render_response(
    status: int, body: bytes, request_id: str | None, keep_alive: bool
) -> bytes:
    """A complete HTTP/1.1 response carrying a router-made page."""
    lines = [
        b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Error")),
        b"Content-Type: text/html; charset=utf-8\r\n",
        b"Content-Length: %d\r\n" % len(body),
        b"Cache-Control: no-cache, no-store\r\n",
    ]
    if request_id is not None:
        lines.append(b"X-Request-Id: %s\r\n" % request_id.encode())
    lines.append(
        b"Connection: keep-alive\r\n" if keep_alive else b"Connection: close\r\n"
    )
    lines.append(b"\r\n")
    lines.append(body)
    return b"".join(lines)


NO_SUCH_APP_PAGE = _NO_SUCH_APP.encode()


def _redirect_page(url: str) -> bytes:
    """A page sending the client on to ``url`` (an http(s) URL)."""
    ref = html.escape(url, quote=True)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="0; url={ref}">'
        "<title>Application error</title></head>\n"
        f'<body><p><a href="{ref}">Continue</a></p></body></html>\n'
    ).encode()
