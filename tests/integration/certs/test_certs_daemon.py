"""Certificates on a real daemon: certs:add, and certs:auto against real pebble.

pebble validates HTTP-01 on the daemon's router port and resolves every name to
127.0.0.1 through pebble-challtestsrv, so the whole order stays on loopback.
"""

from __future__ import annotations

import shutil
import ssl
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.certs.certs_pebble import Pebble, pebble
from tests.integration.certs.certs_tls import (
    any_cert,
    https_request,
    make_cert,
    peer_names,
    trusting,
)
from tests.support.daemon import Daemon, make_daemon

pytestmark = pytest.mark.integration

APP = "store"


@pytest.fixture(scope="module")
def acme(shared_stack_dir: Path) -> Iterator[tuple[Daemon, Pebble, int]]:
    base = Path(tempfile.mkdtemp(prefix="dynod-it-"))
    daemon = make_daemon(base, shared_stack_dir)
    https_port = int(daemon.flags[daemon.flags.index("--https-port") + 1])
    try:
        with pebble(base / "pebble", daemon.http_port) as ca:
            (base / "none.toml").write_text(
                f'acme_directory = "{ca.directory}"\nacme_ca_file = "{ca.ca_file}"\n'
            )
            daemon.start()
            daemon.ctl("apps:create", APP)
            yield daemon, ca, https_port
    finally:
        daemon.destroy()
        shutil.rmtree(base, ignore_errors=True)


def _wait_acm(daemon: Daemon, status: str, timeout: float = 60) -> list[Any]:
    deadline = time.monotonic() + timeout
    domains: list[Any] = []
    while time.monotonic() < deadline:
        domains = daemon.ctl_json("certs:auto", "-a", APP)["domains"]
        if domains and all(d["acm_status"] == status for d in domains):
            return domains
        time.sleep(0.2)
    pytest.fail(f"ACM never reached {status!r}: {domains}\n{daemon.log()[-3000:]}")


def test_certs_add_serves_the_uploaded_certificate(
    acme: tuple[Daemon, Pebble, int], tmp_path: Path
) -> None:
    daemon, _, https_port = acme
    daemon.ctl("domains:add", "secure.store.test", "-a", APP)
    chain, key = make_cert(["secure.store.test"])
    (tmp_path / "c.pem").write_text(chain)
    (tmp_path / "k.pem").write_text(key)
    added = daemon.ctl_json(
        "certs:add", str(tmp_path / "c.pem"), str(tmp_path / "k.pem"), "-a", APP
    )
    assert added["domains"] == ["secure.store.test"]

    # A client trusting only that certificate completes the handshake.
    ctx = trusting(chain, tmp_path)
    deadline = time.monotonic() + 5
    while peer_names(https_port, "secure.store.test") != ["secure.store.test"]:
        assert time.monotonic() < deadline, "the router never served the upload"
        time.sleep(0.1)
    status, headers, _ = https_request(
        https_port, "secure.store.test", "secure.store.test", ctx
    )
    assert status == 503  # nothing deployed: H81, served over TLS
    assert headers["x-request-id"]
    # H32 when the Host is not the name the connection was opened for.
    status, _, _ = https_request(
        https_port, "secure.store.test", "store.localhost", any_cert()
    )
    assert status == 495
    assert "code=H32" in daemon.ctl("logs", "-a", APP, "-n", "100").stdout

    listing = daemon.ctl("certs", "-a", APP).stdout
    assert added["name"] in listing and "secure.store.test" in listing

    # A key that is not the certificate's is refused, saying so.
    _, other_key = make_cert(["secure.store.test"])
    (tmp_path / "k2.pem").write_text(other_key)
    bad = daemon.ctl(
        "certs:add", str(tmp_path / "c.pem"), str(tmp_path / "k2.pem"), "-a", APP,
        check=False,
    )  # fmt: skip
    assert bad.returncode == 1
    assert "does not match" in bad.stderr

    daemon.ctl("certs:remove", "--name", added["name"], "-a", APP)
    deadline = time.monotonic() + 5
    while peer_names(https_port, "secure.store.test") == ["secure.store.test"]:
        assert time.monotonic() < deadline, "the removed certificate is still served"
        time.sleep(0.1)
    daemon.ctl("domains:remove", "secure.store.test", "-a", APP)


def test_certs_auto_issues_from_pebble_and_serves_it(
    acme: tuple[Daemon, Pebble, int], tmp_path: Path
) -> None:
    daemon, ca, https_port = acme
    daemon.ctl("domains:add", "www.store.test", "-a", APP)
    daemon.ctl("certs:auto:enable", "-a", APP)
    _wait_acm(daemon, "cert issued")
    shown = daemon.ctl("certs:auto", "-a", APP).stdout
    assert "Cert Issued" in shown and "www.store.test" in shown

    # The router serves a certificate that chains to pebble's root.
    (tmp_path / "root.pem").write_text(ca.roots_pem())
    ctx = ssl.create_default_context(cafile=str(tmp_path / "root.pem"))
    deadline = time.monotonic() + 5
    while True:
        try:
            status, _, _ = https_request(
                https_port, "www.store.test", "www.store.test", ctx
            )
            break
        except ssl.SSLError:
            assert time.monotonic() < deadline, "the issued certificate is not served"
            time.sleep(0.1)
    assert status == 503

    # Every step is in the app's log stream.
    logs = daemon.ctl("logs", "-a", APP, "-n", "200").stdout
    for step in ("Ordering a certificate", "challenges published", "issued"):
        assert step in logs, logs

    # Adding a domain reissues for both names.
    daemon.ctl("domains:add", "api.store.test", "-a", APP)
    deadline = time.monotonic() + 60
    while sorted(peer_names(https_port, "api.store.test")) != [
        "api.store.test",
        "www.store.test",
    ]:
        assert time.monotonic() < deadline, daemon.ctl("logs", "-a", APP).stdout
        time.sleep(0.2)
    certs = daemon.ctl_json("certs", "-a", APP)
    assert [c["ssl_cert"]["acm"] for c in certs] == [True]

    daemon.ctl("certs:auto:disable", "-a", APP)
    assert daemon.ctl_json("certs", "-a", APP) == []
    assert "disabled" in daemon.ctl("certs:auto", "-a", APP).stdout


def test_certs_auto_failure_is_reported_as_failing(
    acme: tuple[Daemon, Pebble, int],
) -> None:
    daemon, _, _ = acme
    # A name whose challenge the router cannot answer for: the order fails.
    daemon.ctl("apps:create", "broken")
    daemon.ctl("domains:add", "bad.test", "-a", "broken")
    challenge_dir = daemon.run_dir / "acme-challenge"
    # Make the token directory unusable, so every challenge goes unanswered.
    shutil.rmtree(challenge_dir, ignore_errors=True)
    challenge_dir.write_text("not a directory")
    try:
        daemon.ctl("certs:auto:enable", "-a", "broken")
        deadline = time.monotonic() + 60
        domains: list[Any] = []
        while time.monotonic() < deadline:
            domains = daemon.ctl_json("certs:auto", "-a", "broken")["domains"]
            if domains[0]["acm_status"] == "failing":
                break
            time.sleep(0.2)
        assert domains[0]["acm_status"] == "failing", domains
        assert domains[0]["acm_status_reason"]
        logs = daemon.ctl("logs", "-a", "broken", "-n", "100").stdout
        assert "Retrying in" in logs
    finally:
        challenge_dir.unlink()
        daemon.ctl("certs:auto:disable", "-a", "broken")
