"""A small fake dynod API for the CLI tests: real HTTP on a unix socket or TCP.

Handlers return canned JSON (or streamed text, or a WebSocket session); every
request is recorded so tests can check what the CLI sent.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from click.testing import Result

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    """One request the fake API received."""

    method: str
    path: str
    query: dict[str, str]
    body: bytes
    headers: dict[str, str] = field(repr=False)

    def json(self) -> Any:
        return json.loads(self.body)


class FakeApi:
    """Canned answers keyed by (method, path); runs in its own thread and loop."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.seen: list[Seen] = []
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        self.url = ""

    def reply(
        self,
        method: str,
        path: str,
        body: Any = None,
        status: int = 200,
        *,
        chunks: list[bytes] | None = None,
    ) -> None:
        """Answer ``method path`` with JSON ``body``, or stream ``chunks`` as text."""

        async def handler(request: web.Request) -> web.StreamResponse:
            if chunks is None:
                return web.json_response(body, status=status)
            resp = web.StreamResponse(status=status)
            resp.content_type = "text/plain"
            await resp.prepare(request)
            for chunk in chunks:
                await resp.write(chunk)
                await asyncio.sleep(0)
            await resp.write_eof()
            return resp

        self.routes[(method, path)] = handler

    def fail(
        self, method: str, path: str, status: int, error_id: str, msg: str
    ) -> None:
        """Answer with a dynod error body."""
        self.reply(method, path, {"id": error_id, "message": msg}, status)

    def on(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    def sent(self, method: str | None = None) -> list[Seen]:
        """The requests received, optionally only those of one method."""
        return [r for r in self.seen if method is None or r.method == method]

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            Seen(
                request.method,
                request.path,
                dict(request.query),
                body,
                dict(request.headers),
            )
        )
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            return web.json_response(
                {
                    "id": "not_found",
                    "message": f"No fake {request.method} {request.path}.",
                },
                status=404,
            )
        return await handler(request)

    def start(self, unix: str | None = None) -> str:
        """Serve on a unix socket, or on 127.0.0.1:<free port>; return the API URL."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        self.runner = web.AppRunner(app, shutdown_timeout=1.0)
        self.loop.run_until_complete(self.runner.setup())
        site: web.BaseSite
        if unix is not None:
            site = web.UnixSite(self.runner, unix)
        else:
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        if unix is not None:
            self.url = f"unix:{unix}"
        else:
            self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self.url

    def stop(self) -> None:
        if self.runner is None:
            return
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


Dynoctl = Callable[..., Result]
