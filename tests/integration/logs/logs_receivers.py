"""Real log receivers for drain tests: rsyslog from apt and a small HTTPS server.

rsyslog runs in the foreground (``-n``) with its own config, pid file and work
directory, an ``imtcp`` input on a loopback port (plain, or the ``gtls`` driver
with a certificate made here), and writes every message it parsed through a
template that exposes the fields a drain must get right.
"""

from __future__ import annotations

import base64
import http.server
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.daemon import free_port

FIELDS = ("pri", "timestamp", "hostname", "app", "procid", "msg")


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path
    key: Path


def make_certs(directory: Path, name: str = "good") -> Certs:
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / f"{name}-ca.key", directory / f"{name}-ca.pem"
    key, csr, cert = (directory / f"{name}.{ext}" for ext in ("key", "csr", "pem"))
    ext = directory / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    subject = f"/CN=dynod test CA {name}"
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", subject, "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(key), "-out", str(csr))  # fmt: skip
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext),
        "-out", str(cert))  # fmt: skip
    return Certs(ca, cert, key)


@dataclass
class Rsyslog:
    directory: Path
    certs: Certs | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def output(self) -> Path:
        return self.directory / "messages.txt"

    def config(self) -> str:
        template = "|".join(
            f"%{p}%"
            for p in ("pri", "timereported:::date-rfc3339", "hostname", "app-name")
        )
        tls = ""
        driver = ""
        if self.certs is not None:
            tls = (
                f'global(DefaultNetstreamDriverCAFile="{self.certs.ca}"\n'
                f'       DefaultNetstreamDriverCertFile="{self.certs.cert}"\n'
                f'       DefaultNetstreamDriverKeyFile="{self.certs.key}")\n'
            )
            driver = (
                ' StreamDriver.Name="gtls" StreamDriver.Mode="1"'
                ' StreamDriver.AuthMode="anon"'
            )
        return (
            f'global(workDirectory="{self.directory}")\n'
            f"{tls}"
            f'module(load="imtcp"{driver})\n'
            f'template(name="fields" type="string"'
            f' string="{template}|%procid%|%msg%\\n")\n'
            f'ruleset(name="drain") {{ action(type="omfile" file="{self.output}"'
            f' template="fields") }}\n'
            f'input(type="imtcp" address="127.0.0.1" port="{self.port}"'
            f' ruleset="drain")\n'
        )

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "rsyslog.conf"
        conf.write_text(self.config())
        self.proc = subprocess.Popen(
            ["rsyslogd", "-n", "-f", str(conf), "-i", str(self.directory / "pid")],
            stdout=subprocess.DEVNULL,
            stderr=open(self.directory / "stderr.txt", "wb"),  # noqa: SIM115
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"rsyslog did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def messages(self) -> list[dict[str, str]]:
        if not self.output.exists():
            return []
        found = []
        for line in self.output.read_text(errors="replace").splitlines():
            parts = line.split("|", len(FIELDS) - 1)
            if len(parts) == len(FIELDS):
                found.append(dict(zip(FIELDS, parts, strict=True)))
        return found

    def wait_for(self, text: str, timeout: float = 20) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.messages():
                if text in m["msg"]:
                    return m
            time.sleep(0.1)
        raise AssertionError(f"rsyslog never got {text!r}; got {self.messages()[-5:]}")


@dataclass
class Post:
    headers: dict[str, str]
    body: bytes
    status: int


class HttpsReceiver:
    """Accepts logplex-1 POSTs; answers each from ``statuses`` (then 200)."""

    def __init__(self, certs: Certs, statuses: list[int] | None = None) -> None:
        self.posts: list[Post] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.posts.append(Post(dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(certs.cert), str(certs.key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def octet_frames(body: bytes) -> list[bytes]:
    """Split an RFC 6587 octet-counted body; fails on a bad frame."""
    frames = []
    while body:
        length, space, body = body.partition(b" ")
        assert space and length.isdigit(), f"bad frame header {length[:20]!r}"
        frames.append(body[: int(length)])
        body = body[int(length) :]
    return frames
