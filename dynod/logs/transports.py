"""How a drain's batches reach a receiver: syslog over TCP or TLS, or HTTPS.

A transport takes a :class:`Batch` of history lines and delivers it, or raises
:class:`~dynod.errors.DrainFailed` saying whether a retry may help.  A batch is
formatted once and keeps its frame id, so a retried HTTPS post is byte for byte
the one that failed (receivers dedupe on ``Logplex-Frame-Id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import SplitResult, urlsplit

import aiohttp

from dynod.errors import DrainFailed, UserInputError
from dynod.logs.store import Position
from dynod.logs.syslog import frame

SCHEMES = ("syslog", "syslog+tls", "https")
# Logplex's HTTPS batches are about 100 KB.  Syslog is a stream: it takes as
# much per turn as a dyno's reader does, so a drain keeps pace with a flood.
BATCH_BYTES = 100 * 1024
SYSLOG_BATCH_BYTES = 1024 * 1024
CONNECT_TIMEOUT = 5.0
REQUEST_TIMEOUT = 10.0


@dataclass
class Batch:
    """History lines read from ``start`` up to ``end``, and their wire forms."""

    data: bytes
    start: Position
    end: Position
    frame_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    payload: bytes | None = None
    count: int = 0


class Transport(Protocol):
    # How many bytes of history one batch may hold.
    batch_bytes: int

    async def send(self, batch: Batch) -> None:
        """Deliver the batch or raise DrainFailed."""

    async def close(self) -> None: ...


def parse_url(url: str) -> SplitResult:
    """Check a drain URL; raises UserInputError naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise UserInputError(
            f"Drain URL {url!r} has an unknown scheme: use syslog://HOST:PORT, "
            "syslog+tls://HOST:PORT or https://[USER:PASS@]HOST[:PORT]/PATH."
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise UserInputError(f"Drain URL {url!r} has an invalid port.") from exc
    if not parts.hostname:
        raise UserInputError(f"Drain URL {url!r} has no host: add one.")
    if parts.scheme != "https" and port is None:
        raise UserInputError(f"Drain URL {url!r} has no port: add :PORT.")
    return parts


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system's trust store plus the configured extra CA file, verifying names."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def make_transport(url: str, token: str, ca_file: Path | None) -> Transport:
    parts = parse_url(url)
    if parts.scheme == "https":
        return HttpsTransport(url, parts, token, tls_context(ca_file))
    context = tls_context(ca_file) if parts.scheme == "syslog+tls" else None
    return SyslogTransport(parts, token, context)


class SyslogTransport:
    """RFC 5424 over one long-lived TCP (RFC 6587) or TLS (RFC 5425) connection.

    TCP gives no receipt: a batch counts as delivered once written to the
    socket, as with every syslog sender.
    """

    def __init__(
        self, parts: SplitResult, token: str, context: ssl.SSLContext | None
    ) -> None:
        self.host = parts.hostname or ""
        self.port = parts.port or 0
        self.host_field = token.encode()
        self.context = context
        self.batch_bytes = SYSLOG_BATCH_BYTES
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=self.context,
                    server_hostname=self.host if self.context else None,
                ),
                CONNECT_TIMEOUT,
            )
        except ssl.SSLCertVerificationError as exc:
            raise DrainFailed(
                f"The receiver's certificate was refused: {exc.verify_message}.",
                certificate=exc.verify_message or "bad certificate",
            ) from exc
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise DrainFailed(f"Cannot connect: {exc!r}.") from exc
        self._reader, self._writer = reader, writer

    async def send(self, batch: Batch) -> None:
        if batch.payload is None:
            batch.payload, batch.count = frame(batch.data, self.host_field)
        if not batch.payload:
            return
        # A receiver never speaks: end of file means it hung up, and writing
        # into that connection would lose the batch (RFC 6587 §3.2 has no ack).
        if self._writer is None or self._writer.is_closing() or self._hung_up():
            await self.close()
            await self._connect()
        assert self._writer is not None
        try:
            self._writer.write(batch.payload)
            await self._writer.drain()
        except (OSError, ssl.SSLError) as exc:
            await self.close()
            raise DrainFailed(f"The connection broke: {exc!r}.") from exc

    def _hung_up(self) -> bool:
        return self._reader is not None and (
            self._reader.at_eof() or self._reader.exception() is not None
        )

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)
            finally:
                # A graceful close waits to flush what is buffered, and a
                # receiver that stopped reading would keep the socket open
                # for good.
                writer.transport.abort()


class HttpsTransport:
    """logplex-1 batches POSTed to an HTTPS endpoint (Logplex's HTTP drains)."""

    def __init__(
        self, url: str, parts: SplitResult, token: str, context: ssl.SSLContext
    ) -> None:
        self.token = token
        self.host_field = token.encode()
        self.batch_bytes = BATCH_BYTES
        self.context = context
        self.auth = (
            aiohttp.BasicAuth(parts.username, parts.password or "")
            if parts.username
            else None
        )
        # The credentials travel in the Authorization header, not the URL.
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        self.url = parts._replace(netloc=netloc).geturl()
        self._session: aiohttp.ClientSession | None = None

    async def send(self, batch: Batch) -> None:
        if batch.payload is None:
            batch.payload, batch.count = frame(
                batch.data, self.host_field, structured_data=False
            )
        if not batch.payload:
            return
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.context),
                timeout=aiohttp.ClientTimeout(
                    total=REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT
                ),
            )
        headers = {
            "Content-Type": "application/logplex-1",
            "Logplex-Msg-Count": str(batch.count),
            "Logplex-Frame-Id": batch.frame_id,
            "Logplex-Drain-Token": self.token,
            "User-Agent": "dynod-logs/1",
        }
        try:
            async with self._session.post(
                self.url, data=batch.payload, headers=headers, auth=self.auth
            ) as response:
                status = response.status
                await response.read()
        except aiohttp.ClientConnectorCertificateError as exc:
            reason = getattr(exc.certificate_error, "verify_message", None)
            raise DrainFailed(
                f"The receiver's certificate was refused: {exc}.",
                certificate=reason or "bad certificate",
            ) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise DrainFailed(f"The request failed: {exc!r}.") from exc
        if 200 <= status < 300:
            return
        # 4xx: the receiver will never take this batch; anything else may pass later.
        raise DrainFailed(
            f"The receiver answered {status}.", retry=not 400 <= status < 500
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
