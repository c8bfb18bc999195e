"""Host name rules, PEM checks and the certificate directory, without root."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from dynod.certs.names import covers, hostname
from dynod.certs.pem import inspect, self_signed
from dynod.certs.publish import CertPublisher
from dynod.errors import InvalidCertificate, InvalidDomain


def test_certs_wildcards_cover_exactly_one_label() -> None:
    assert covers("*.example.com", "www.example.com")
    assert not covers("*.example.com", "a.b.example.com")
    assert not covers("*.example.com", "example.com")
    assert covers("WWW.example.com", "www.EXAMPLE.com")
    assert not covers("www.example.com", "api.example.com")


def test_certs_custom_domains_are_checked() -> None:
    assert hostname("WWW.Example.COM.", "localhost") == "www.example.com"
    assert hostname("*.example.com", "localhost") == "*.example.com"
    for bad in ("", "no spaces.com", "-lead.example.com", "x" * 300, 5, "single"):
        with pytest.raises(InvalidDomain):
            hostname(bad, "localhost")
    with pytest.raises(InvalidDomain, match="router's own domain"):
        hostname("other.localhost", "localhost")


def test_certs_inspect_reads_names_and_checks_the_key() -> None:
    chain, key = self_signed(["a.test", "*.b.test"], days=10)
    info = inspect(chain, key)
    assert info.domains == ("a.test", "*.b.test")
    assert 9 * 86400 < info.not_after - time.time() < 11 * 86400
    _, other = self_signed(["a.test"])
    with pytest.raises(InvalidCertificate, match="does not match"):
        inspect(chain, other)
    with pytest.raises(InvalidCertificate, match="not PEM"):
        inspect("garbage", key)
    with pytest.raises(InvalidCertificate, match="not an unencrypted PEM key"):
        inspect(chain, "garbage")
    with pytest.raises(InvalidCertificate, match="expired"):
        inspect(chain, key, now=time.time() + 30 * 86400)


def test_certs_publisher_swaps_the_index_and_drops_old_files(tmp_path: Path) -> None:
    pub = CertPublisher(tmp_path)
    pub.prepare(*self_signed(["*.localhost"]))
    first = self_signed(["a.test"])
    assert pub.publish({"a.test": first})
    assert not pub.publish({"a.test": first})  # unchanged: nothing written
    index = json.loads((pub.dir / "index.json").read_text())
    assert index["default"] == "default.pem"
    old_file = index["hosts"]["a.test"]
    assert (pub.dir / old_file).stat().st_mode & 0o777 == 0o600

    second = self_signed(["a.test"])
    pub.publish({"a.test": second, "b.test": second})
    index = json.loads((pub.dir / "index.json").read_text())
    assert index["version"] == 3
    assert index["hosts"]["a.test"] == index["hosts"]["b.test"] != old_file
    assert not (pub.dir / old_file).exists()
    assert sorted(p.name for p in pub.dir.iterdir()) == sorted(
        ["default.pem", "index.json", index["hosts"]["a.test"]]
    )
