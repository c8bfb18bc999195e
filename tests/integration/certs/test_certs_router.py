"""The router's HTTPS port: SNI, reloads, TLS policy, H32, ACME tokens on HTTP,
and the protocol named in the log line.

A real router process (``python -m dynod.router``) with a certificate directory
written by :class:`~dynod.certs.publish.CertPublisher`, and a real backend.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dynod.certs.challenges import ChallengeTokens
from dynod.certs.publish import CertPublisher
from tests.integration.certs.certs_pebble import free_port
from tests.integration.certs.certs_tls import (
    any_cert,
    https_request,
    make_cert,
    peer_names,
    trusting,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class Router:
    run_dir: Path
    http_port: int
    https_port: int
    certs: CertPublisher
    tmp: Path


@pytest.fixture(scope="module")
def router() -> Iterator[Router]:
    from tests.support.names import new_instance

    tmp = Path(tempfile.mkdtemp(prefix="dynod-tls-"))
    run_dir = tmp / "run"
    run_dir.mkdir()
    backend = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    dyno = {"name": "web.1", "addr": "127.0.0.1", "port": backend.server_address[1]}
    routes = {
        "version": 1,
        "apps": {
            "shop": {
                "hosts": ["shop.localhost", "www.shop.test", "api.shop.test"],
                "state": "running",
                "dynos": [dyno],
            },
            "blog": {"hosts": ["blog.test"], "state": "running", "dynos": [dyno]},
        },
    }
    (run_dir / "routes.json").write_text(json.dumps(routes))
    certs = CertPublisher(run_dir)
    certs.prepare(*make_cert(["*.localhost", "localhost"]))
    http_port, https_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dynod.router", "--instance", new_instance(),
         "--run-dir", str(run_dir), "--bind", "127.0.0.1",
         "--http-port", str(http_port), "--https-port", str(https_port),
         "--workers", "2"],
        cwd=ROOT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not (run_dir / "router.pid").exists():
            assert proc.poll() is None, "the router exited"
            assert time.monotonic() < deadline, "the router did not start"
            time.sleep(0.05)
        yield Router(run_dir, http_port, https_port, certs, tmp)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        backend.shutdown()
        backend.server_close()
        shutil.rmtree(tmp, ignore_errors=True)


def _publish_and_wait(router: Router, hosts: dict[str, tuple[str, str]]) -> None:
    router.certs.publish(hosts)
    # Workers poll the index every 0.25 s; two workers, so allow a few rounds.
    time.sleep(0.8)


def test_certs_router_serves_each_hosts_certificate_by_sni(router: Router) -> None:
    www = make_cert(["www.shop.test"])
    blog = make_cert(["blog.test"])
    _publish_and_wait(router, {"www.shop.test": www, "blog.test": blog})

    # Each name gets its own certificate, verified against it as the only CA.
    for host, (chain, _) in (("www.shop.test", www), ("blog.test", blog)):
        ctx = trusting(chain, router.tmp)
        status, _, body = https_request(router.https_port, host, host, ctx)
        assert status == 200
        seen = json.loads(body)
        assert seen["x-forwarded-proto"] == "https"
        assert seen["x-forwarded-port"] == str(router.https_port)
        assert seen["host"] == host

    # Unknown names and no SNI at all get the default certificate.
    assert peer_names(router.https_port, "nobody.test") == ["*.localhost", "localhost"]
    assert peer_names(router.https_port, None) == ["*.localhost", "localhost"]


def test_certs_router_reloads_a_replaced_certificate(router: Router) -> None:
    first = make_cert(["api.shop.test"])
    _publish_and_wait(router, {"api.shop.test": first})
    assert peer_names(router.https_port, "api.shop.test") == ["api.shop.test"]
    second = make_cert(["api.shop.test", "extra.shop.test"])
    _publish_and_wait(router, {"api.shop.test": second})
    assert peer_names(router.https_port, "api.shop.test") == [
        "api.shop.test",
        "extra.shop.test",
    ]
    # The replaced certificate's file is gone from the directory.
    files = {p.name for p in router.certs.dir.glob("*.pem")}
    assert len(files) == 2  # default + the new one


def test_certs_router_h32_when_sni_and_host_differ(router: Router) -> None:
    www = make_cert(["www.shop.test"])
    _publish_and_wait(router, {"www.shop.test": www})
    status, _, body = https_request(
        router.https_port, "www.shop.test", "blog.test", any_cert()
    )
    assert status == 495
    assert b"SSL certificate error" in body
    # The same connection's name with a port in Host is fine.
    status, *_ = https_request(
        router.https_port, "www.shop.test", "www.shop.test:443", any_cert()
    )
    assert status == 200


def test_certs_router_refuses_tls_below_1_2(router: Router) -> None:
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    # Let this client offer TLS 1.0/1.1 at all: only the router may refuse.
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        # Deprecated on purpose: these are the versions the router must refuse.
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError):
        https_request(router.https_port, "shop.localhost", "shop.localhost", old)
    # The same client allowed 1.2 gets through, so the refusal was the version.
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    status, *_ = https_request(
        router.https_port, "shop.localhost", "shop.localhost", old
    )
    assert status == 200


def test_certs_router_offers_tls_1_2_only_forward_secret_aead_ciphers(
    router: Router,
) -> None:
    def client(ciphers: str) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(ciphers)
        return ctx

    # Static RSA key exchange (no forward secrecy) and CBC suites: refused.
    for weak in ("AES128-GCM-SHA256:AES256-SHA", "ECDHE+AES128+SHA1:ECDHE+AES256+SHA1"):
        with pytest.raises(ssl.SSLError):
            https_request(
                router.https_port, "shop.localhost", "shop.localhost", client(weak)
            )
    # The same client offering ECDHE with AES-GCM gets through.
    status, *_ = https_request(
        router.https_port, "shop.localhost", "shop.localhost", client("ECDHE+AESGCM")
    )
    assert status == 200


def test_certs_router_answers_acme_tokens_on_http(router: Router) -> None:
    tokens = ChallengeTokens(router.run_dir)
    tokens.publish("tok_EN-1", "tok_EN-1.thumbprint")
    try:
        # Any host, even one no app has: the token is what matters.
        for host in ("www.shop.test", "unknown.test"):
            request = urllib.request.Request(
                f"http://127.0.0.1:{router.http_port}/.well-known/acme-challenge/tok_EN-1",
                headers={"Host": host},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
                assert response.read() == b"tok_EN-1.thumbprint"
    finally:
        tokens.withdraw("tok_EN-1")

    # A withdrawn or unknown token goes to the app as any other path.
    request = urllib.request.Request(
        f"http://127.0.0.1:{router.http_port}/.well-known/acme-challenge/tok_EN-1",
        headers={"Host": "www.shop.test"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["host"] == "www.shop.test"


def test_certs_router_logs_the_protocol_each_request_came_in_with(
    router: Router,
) -> None:
    # Bound only for this test: the router drops lines while nobody listens.
    path = router.run_dir / "logs.sock"
    logs = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    lines: dict[str, str] = {}
    try:
        logs.bind(str(path))
        logs.settimeout(5)
        status, *_ = https_request(
            router.https_port, "shop.localhost", "shop.localhost", any_cert(), "/tls"
        )
        assert status == 200
        request = urllib.request.Request(
            f"http://127.0.0.1:{router.http_port}/plain",
            headers={"Host": "shop.localhost"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        # A line of an earlier test's request may still arrive: go by path.
        while not {"/tls", "/plain"} <= lines.keys():
            records = logs.recv(65536).decode().split("\n")[1::2]
            lines |= {r.split('path="')[1].split('"')[0]: r for r in records}
    finally:
        logs.close()
        path.unlink(missing_ok=True)

    # Heroku's legacy router form: the line ends with the scheme.
    assert lines["/tls"].rsplit(" ", 1)[1] == "protocol=https"
    assert lines["/plain"].rsplit(" ", 1)[1] == "protocol=http"
