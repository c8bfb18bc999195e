"""A real ACME server for tests and the benchmark: pebble + pebble-challtestsrv.

Both run on loopback with ports of their own.  challtestsrv answers every DNS
name with 127.0.0.1, and pebble validates HTTP-01 on ``http_port`` (the test
daemon's router), so an order for any name is answered by dynod's router.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Pebble:
    directory: str
    ca_file: Path
    management: str

    def roots_pem(self) -> str:
        """Pebble's issuing root, to verify the certificates it issues."""
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        with urllib.request.urlopen(f"{self.management}/roots/0", context=ctx) as r:
            return str(r.read().decode())


def _tls_files(base: Path) -> tuple[Path, Path]:
    cert, key = base / "pebble.crt", base / "pebble.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def pebble(base: Path, http_port: int) -> Iterator[Pebble]:
    """Run pebble (validating HTTP-01 on ``http_port``) until the block ends."""
    base.mkdir(parents=True, exist_ok=True)
    cert, key = _tls_files(base)
    acme_port, mgmt_port, dns_port, cts_port = (free_port() for _ in range(4))
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{acme_port}",
            "managementListenAddress": f"127.0.0.1:{mgmt_port}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (base / "pebble.json").write_text(json.dumps(config))
    log = open(base / "pebble.log", "ab")  # noqa: SIM115
    challtest = subprocess.Popen(
        ["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
         "-dns01", f"127.0.0.1:{dns_port}", "-http01", "", "-https01", "",
         "-tlsalpn01", "", "-management", f"127.0.0.1:{cts_port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    server = subprocess.Popen(
        ["pebble", "-config", str(base / "pebble.json"),
         "-dnsserver", f"127.0.0.1:{dns_port}"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        _wait_port(cts_port, challtest)
        _wait_port(acme_port, server)
        yield Pebble(
            f"https://127.0.0.1:{acme_port}/dir",
            cert,
            f"https://127.0.0.1:{mgmt_port}",
        )
    finally:
        _stop(server)
        _stop(challtest)
        log.close()
