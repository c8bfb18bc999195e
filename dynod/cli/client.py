"""A small synchronous client for the dynod JSON API.

Commands call :meth:`Client.request` and the streaming helpers as plain
functions.  They go over the standard library's ``http.client``: a CLI starts
for every command, and importing an asynchronous HTTP stack would cost every
command a tenth of a second.  The WebSocket attach of ``run`` is the one caller
that needs aiohttp and an event loop; :meth:`Client.session` and
:meth:`Client.run` import and make them on first use (see
:mod:`dynod.cli.attach`).

``$DYNOD_API`` names the endpoint: ``unix:/run/dynod/api.sock`` (the default)
or ``http://HOST:PORT``, where every request carries
``Authorization: Bearer $DYNOD_API_TOKEN``.

Errors: :class:`ApiError` when the API answers 4xx/5xx (its ``message`` is the
server's own sentence), :class:`ApiUnreachable` when there is no API to talk to.
"""

from __future__ import annotations

import contextlib
import http.client
import json as jsonlib
import socket
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode, urlsplit

from dynod.errors import DynodError, UserInputError

if TYPE_CHECKING:
    import asyncio

    import aiohttp

DEFAULT_API = "unix:/run/dynod/api.sock"
_CONNECT_TIMEOUT = 10.0
# A plain request may wait on the server doing real work (a rollback, a scale).
_READ_TIMEOUT = 300.0
_UPLOAD_CHUNK = 256 * 1024
_STREAM_CHUNK = 64 * 1024

T = TypeVar("T")
Params = Mapping[str, str | int | bool | None]
Progress = Callable[[int, int], None]


class ApiError(DynodError):
    """The API refused a request; the message is the server's own sentence."""

    def __init__(self, message: str, *, status: int, error_id: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id


class ApiUnreachable(DynodError):
    """No dynod API answers at ``$DYNOD_API``, or the connection broke."""


@dataclass(frozen=True)
class Endpoint:
    """Where the API listens, parsed from ``$DYNOD_API``."""

    api: str
    base_url: str
    socket_path: str | None
    token: str | None

    @classmethod
    def parse(cls, api: str, token: str | None = None) -> Endpoint:
        """Parse a ``$DYNOD_API`` value; raise UserInputError if it is neither form."""
        if api.startswith("unix:") and len(api) > len("unix:"):
            # The host part of the URL is a placeholder: the socket decides.
            return cls(api, "http://localhost", api[len("unix:") :], None)
        if api.startswith(("http://", "https://")) and urlsplit(api).hostname:
            return cls(api, api.rstrip("/"), None, token or None)
        raise UserInputError(
            f"$DYNOD_API is {api!r}, which is neither unix:/PATH/TO/SOCKET nor "
            "http://HOST:PORT; set it to one of those, or unset it to use "
            f"{DEFAULT_API}."
        )


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (the API's default home)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Client:
    """Talks to the API from synchronous code; one connection per request.

    Not thread-safe.  Call :meth:`close` when done (the CLI does it as each
    command ends).
    """

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            import asyncio

            self._loop = asyncio.new_event_loop()
        return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one coroutine on the client's loop and return its result.

        If the wait is interrupted (Ctrl-C), the coroutine is cancelled before
        the interruption goes on, so nothing is left running on the loop.
        """
        task = self.loop.create_task(coro)
        try:
            return self.loop.run_until_complete(task)
        except BaseException:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    self.loop.run_until_complete(task)
            raise

    def close(self) -> None:
        """Close the WebSocket session and loop, if they were made."""
        if self._session is not None:
            self.run(self._session.close())
            self._session = None
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def url(self, path: str) -> str:
        """The request URL for an API path or for a URL the API handed out.

        The API's own URLs (``output_stream_url``, ``attach_url``) may carry a
        host the client cannot reach as such (a unix socket has none), so only
        their path and query are kept.
        """
        parts = urlsplit(path)
        if parts.scheme:
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        return self.endpoint.base_url + "/" + path.lstrip("/")

    def headers(self) -> dict[str, str]:
        """Headers every request carries."""
        headers = {"Accept": "application/json", "User-Agent": "dynoctl"}
        if self.endpoint.token:
            headers["Authorization"] = f"Bearer {self.endpoint.token}"
        return headers

    async def session(self) -> aiohttp.ClientSession:
        """An aiohttp session for the WebSocket attach, made on first use."""
        import aiohttp

        if self._session is None:
            connector: aiohttp.BaseConnector | None = None
            if self.endpoint.socket_path is not None:
                connector = aiohttp.UnixConnector(path=self.endpoint.socket_path)
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self.headers()
            )
        return self._session

    def _connection(self) -> http.client.HTTPConnection:
        if self.endpoint.socket_path is not None:
            return _UnixConnection(self.endpoint.socket_path, _CONNECT_TIMEOUT)
        parts = urlsplit(self.endpoint.base_url)
        kind = (
            http.client.HTTPSConnection
            if parts.scheme == "https"
            else http.client.HTTPConnection
        )
        return kind(parts.hostname or "", parts.port, timeout=_CONNECT_TIMEOUT)

    def open(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: bytes | Iterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        streaming: bool = False,
    ) -> http.client.HTTPResponse:
        """Send a request; return the response once its status says success.

        Raises ApiError for a 4xx/5xx answer and ApiUnreachable when the
        connection cannot be made or breaks.
        """
        target = urlsplit(self.url(path))
        query = "&".join(
            q for q in (target.query, urlencode(clean_params(params) or {})) if q
        )
        conn = self._connection()
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            raise unreachable(self.endpoint, exc) from exc
        try:
            # Streams may stay quiet for as long as nothing happens.
            assert conn.sock is not None
            conn.sock.settimeout(None if streaming else _READ_TIMEOUT)
            conn.request(
                method,
                target.path + (f"?{query}" if query else ""),
                body=body,
                headers={**self.headers(), **(headers or {})},
            )
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise broken(self.endpoint, method, path, exc) from exc
        if resp.status >= 400:
            data = resp.read()
            conn.close()
            raise api_error(resp.status, resp.reason or "", data, method, path)
        return resp

    def _json(self, resp: http.client.HTTPResponse, method: str, path: str) -> Any:
        try:
            text = resp.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as exc:
            raise broken(self.endpoint, method, path, exc) from exc
        finally:
            resp.close()
        return jsonlib.loads(text) if text.strip() else None

    def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        params: Params | None = None,
    ) -> Any:
        """Send one request and return the decoded JSON answer (None if empty)."""
        body = None if json is None else jsonlib.dumps(json).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        resp = self.open(method, path, params=params, body=body, headers=headers)
        return self._json(resp, method, path)

    def upload(
        self,
        path: str,
        body: IO[bytes],
        size: int,
        *,
        params: Params | None = None,
        content_type: str = "application/gzip",
        progress: Progress | None = None,
    ) -> Any:
        """POST ``size`` bytes read from ``body``; return the decoded JSON answer.

        ``progress(sent, size)`` is called after every chunk handed to the socket.
        """

        def chunks() -> Iterator[bytes]:
            sent = 0
            while chunk := body.read(_UPLOAD_CHUNK):
                yield chunk
                sent += len(chunk)
                if progress is not None:
                    progress(sent, size)

        # An explicit length keeps the body unchunked, so the server can refuse
        # an oversized source before reading it.
        headers = {"Content-Type": content_type, "Content-Length": str(size)}
        resp = self.open("POST", path, params=params, body=chunks(), headers=headers)
        return self._json(resp, "POST", path)

    def stream(self, path: str, *, params: Params | None = None) -> Iterator[bytes]:
        """Yield the body of a GET as it arrives, until the server ends it."""
        resp = self.open("GET", path, params=params, streaming=True)
        try:
            while True:
                try:
                    chunk = resp.read1(_STREAM_CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise broken(self.endpoint, "GET", path, exc) from exc
                if not chunk:
                    return
                yield chunk
        finally:
            resp.close()

    def stream_lines(self, path: str, *, params: Params | None = None) -> Iterator[str]:
        """Yield the lines of a streamed text body, without their newlines."""
        pending = b""
        for chunk in self.stream(path, params=params):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.decode("utf-8", "replace")
        if pending:
            yield pending.decode("utf-8", "replace")


def clean_params(params: Params | None) -> dict[str, str] | None:
    """Query parameters as strings, leaving out the unset ones."""
    if params is None:
        return None
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        out[key] = (
            ("true" if value else "false") if isinstance(value, bool) else str(value)
        )
    return out


def api_error(
    status: int, reason: str, body: bytes, method: str, path: str
) -> ApiError:
    """The ApiError for an error answer, keeping the server's message if it sent one."""
    try:
        payload = jsonlib.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("message"), str):
        return ApiError(
            payload["message"], status=status, error_id=str(payload.get("id", ""))
        )
    return ApiError(
        f"The dynod API answered {status} {reason} to {method} {path} without an "
        "error message; check the daemon's log (`journalctl -u dynod`).",
        status=status,
        error_id="",
    )


def unreachable(endpoint: Endpoint, cause: OSError) -> ApiUnreachable:
    """The error for a connection that could not be made, with what to do."""
    where = f"the dynod API at {endpoint.api} ($DYNOD_API)"
    start = (
        "Start the daemon with `systemctl start dynod` or `dynod serve`, or set "
        "$DYNOD_API to where it listens."
    )
    if isinstance(cause, FileNotFoundError):
        return ApiUnreachable(
            f"Cannot reach {where}: the socket does not exist. {start}"
        )
    if isinstance(cause, PermissionError):
        return ApiUnreachable(
            f"Cannot reach {where}: permission denied. Run dynoctl as root or as a "
            "member of the dynod group."
        )
    if isinstance(cause, ConnectionRefusedError):
        return ApiUnreachable(f"Cannot reach {where}: connection refused. {start}")
    return ApiUnreachable(f"Cannot reach {where}: {cause.strerror or cause}. {start}")


def broken(
    endpoint: Endpoint, method: str, path: str, cause: BaseException
) -> ApiUnreachable:
    """The error for a connection that broke in the middle of a request."""
    detail = str(cause) or type(cause).__name__
    return ApiUnreachable(
        f"The connection to the dynod API at {endpoint.api} broke during {method} "
        f"{path} ({detail}). Check that dynod is running and try again."
    )
