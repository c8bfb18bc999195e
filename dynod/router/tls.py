"""HTTPS for the router: SNI certificate choice, reloads, and the front door.

dynod writes the certificates to ``<run_dir>/certs`` (see
:mod:`dynod.certs.publish`); each worker polls its ``index.json`` and builds one
:class:`ssl.SSLContext` per certificate file, reusing contexts of files it has
already loaded.  The listening context carries the default certificate; its SNI
callback switches the handshake to the context of the named host, so a new
certificate is served from the next handshake on without a restart.

TLS 1.2 is the floor, with only ECDHE key exchange and AEAD ciphers for 1.2
(TLS 1.3 suites are all AEAD); compression and renegotiation are off.

The front door (:func:`front_door`) runs before routing on every request:

- on plain HTTP it answers ``/.well-known/acme-challenge/TOKEN`` from the
  tokens dynod publishes (:mod:`dynod.certs.challenges`), for any host;
- on HTTPS it refuses a request whose ``Host`` differs from the SNI name with
  H32 (495), as Heroku does, since the certificate shown was not the host's.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import structlog

from dynod.router.context import WorkerContext
from dynod.router.hcodes import HCODES
from dynod.router.proxy import ProxyConnection

if TYPE_CHECKING:
    from dynod.router.exchange import Exchange

log = structlog.get_logger("dynod.router")

_CIPHERS_TLS12 = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS"
_SNI_ATTR = "_dynod_sni"
_CHALLENGE_PREFIX = b"/.well-known/acme-challenge/"
_H32 = HCODES["H32"]


@dataclass(frozen=True)
class TlsOptions:
    port: int
    cert_dir: Path
    # Seconds between looks at the certificate index.
    poll: float = 0.25


def server_context(bundle: Path | None = None) -> ssl.SSLContext:
    """A server context with the router's TLS policy, serving ``bundle``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(_CIPHERS_TLS12)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.set_alpn_protocols(["http/1.1"])
    if bundle is not None:
        # The bundle holds the key first, then the chain; both load from one file.
        ctx.load_cert_chain(bundle)
    return ctx


class CertIndex:
    """The worker's view of the certificate directory: host → context."""

    def __init__(self, cert_dir: Path) -> None:
        self.dir = cert_dir
        self.by_host: dict[str, ssl.SSLContext] = {}
        self._by_file: dict[str, ssl.SSLContext] = {}
        self._seen: tuple[int, int, int] | None = None
        self.listening = server_context()
        self.listening.sni_callback = self._on_sni

    def load(self) -> bool:
        """Read the index if it changed; True when contexts were swapped in.

        A file that fails to load keeps that host on its previous context (or
        the default), and is tried again when the index changes next.
        """
        index = self.dir / "index.json"
        try:
            st = os.stat(index)
        except FileNotFoundError:
            return False
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key == self._seen:
            return False
        self._seen = key
        try:
            doc = json.loads(index.read_bytes())
            default = str(doc["default"])
            hosts = {str(h): str(f) for h, f in dict(doc["hosts"]).items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("certificate index ignored", error=str(exc))
            return False

        # Load each file once; keep what fails on its previous context.
        loaded: dict[str, ssl.SSLContext] = {}
        for name in {default, *hosts.values()}:
            ctx = self._by_file.get(name)
            if ctx is None:
                try:
                    ctx = server_context(self.dir / name)
                except (OSError, ssl.SSLError) as exc:
                    log.warning("certificate not loaded", file=name, error=str(exc))
                    continue
                ctx.sni_callback = self._on_sni
            loaded[name] = ctx
        if default in loaded:
            self.listening.load_cert_chain(self.dir / default)
        by_host = {
            h: loaded[f] if f in loaded else self.by_host[h]
            for h, f in hosts.items()
            if f in loaded or h in self.by_host
        }
        self._by_file, self.by_host = loaded, by_host
        return True

    def _on_sni(
        self, sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        # Remember the name for the Host check, then hand over the host's context.
        if name is None:
            return
        host = name.lower()
        setattr(sslobj, _SNI_ATTR, host)
        chosen = self.by_host.get(host)
        if chosen is not None:
            sslobj.context = chosen


class TlsProxyConnection(ProxyConnection):
    """A client connection over TLS: forwarded and logged as https, SNI
    remembered."""

    __slots__ = ("sni",)
    protocol: ClassVar[bytes] = b"https"

    def __init__(self, ctx: WorkerContext, forwarded: bytes) -> None:
        super().__init__(ctx)
        self.forwarded = forwarded
        self.sni: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sslobj = transport.get_extra_info("ssl_object")
        self.sni = getattr(sslobj, _SNI_ATTR, None)
        super().connection_made(transport)


class TlsListener:
    """The worker's HTTPS server and the certificate polling that feeds it."""

    def __init__(self, options: TlsOptions, ctx: WorkerContext) -> None:
        self.options = options
        self.ctx = ctx
        self.index = CertIndex(options.cert_dir)
        self._server: asyncio.Server | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def start(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self.index.load()
        forwarded = b"X-Forwarded-Proto: https\r\nX-Forwarded-Port: %d\r\n" % (
            self.options.port
        )
        self._server = await loop.create_server(
            lambda: TlsProxyConnection(self.ctx, forwarded),
            sock=sock,
            ssl=self.index.listening,
            ssl_handshake_timeout=10.0,
        )
        self._schedule()

    def _schedule(self) -> None:
        self._timer = self.ctx.loop.call_later(self.options.poll, self._tick)

    def _tick(self) -> None:
        try:
            self.index.load()
        finally:
            self._schedule()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._server is not None:
            self._server.close()


def front_door(challenge_dir: Path) -> Callable[[Exchange], bool]:
    """The pre-routing hook: ACME tokens on HTTP, the SNI/Host check on HTTPS.

    Returns True when it ended the exchange itself.
    """

    def hook(ex: Exchange) -> bool:
        proxy = ex.proxy
        if isinstance(proxy, TlsProxyConnection):
            sni = proxy.sni
            if sni is not None and ex.info.host and sni != ex.info.host:
                ex.app = proxy.ctx.table.lookup(ex.info.host)
                ex.fail(_H32)
                return True
            return False
        if ex.url.startswith(_CHALLENGE_PREFIX):
            return _answer_challenge(ex, challenge_dir)
        return False

    return hook


def _answer_challenge(ex: Exchange, challenge_dir: Path) -> bool:
    token = ex.url[len(_CHALLENGE_PREFIX) :].decode("latin-1")
    if not token or "/" in token or token.startswith("."):
        return False
    try:
        body = (challenge_dir / token).read_bytes()
    except OSError:
        # Not ours: the app may answer its own challenges.
        return False
    keep = ex.keep_alive and not ex.proxy.ctx.draining
    ex.done = True
    ex.proxy.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
        b"Connection: %s\r\n\r\n%s"
        % (len(body), b"keep-alive" if keep else b"close", body)
    )
    ex.proxy.exchange_finished(ex, keep, ex.proxy.ctx.loop.time())
    return True
