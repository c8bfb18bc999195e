"""Dyno address allocation and veth names."""

from __future__ import annotations

import ipaddress

import pytest

from dynod.errors import RuntimeFailure
from dynod.runtime.network import AddressPool, bridge_name, veth_address, veth_name

SUBNET = ipaddress.IPv4Network("10.217.0.0/16")


def test_runtime_pool_skips_network_and_gateway() -> None:
    pool = AddressPool(SUBNET)
    assert str(pool.gateway) == "10.217.0.1"
    assert str(pool.interface) == "10.217.0.1/16"
    assert [pool.allocate() for _ in range(3)] == [
        "10.217.0.2",
        "10.217.0.3",
        "10.217.0.4",
    ]


def test_runtime_pool_reuses_released_and_respects_reserved() -> None:
    pool = AddressPool(SUBNET)
    pool.reserve("10.217.0.2")
    pool.reserve("10.217.0.4")
    assert pool.allocate() == "10.217.0.3"
    assert pool.allocate() == "10.217.0.5"
    pool.release("10.217.0.3")
    assert pool.allocate() == "10.217.0.3"
    assert pool.used() == ["10.217.0.2", "10.217.0.3", "10.217.0.4", "10.217.0.5"]


def test_runtime_pool_never_hands_out_broadcast_and_runs_out() -> None:
    pool = AddressPool(ipaddress.IPv4Network("10.1.2.0/29"))
    got = [pool.allocate() for _ in range(5)]
    assert got == [f"10.1.2.{i}" for i in range(2, 7)]
    with pytest.raises(RuntimeFailure, match=r"10\.1\.2\.0/29 has no free address"):
        pool.allocate()


def test_runtime_veth_names_round_trip() -> None:
    name = veth_name("dynod", SUBNET, "10.217.1.2")
    assert name == "dynod0102"
    assert veth_address("dynod", SUBNET, name) == "10.217.1.2"
    assert bridge_name("dynod") == "dynodbr"
    # The bridge, other instances' links and junk are not dyno veths.
    for other in (
        "dynodbr",
        "dynod1",
        "dynodzzzz",
        "othr0102",
        "dynod0000",
        "dynodffff",
    ):
        assert veth_address("dynod", SUBNET, other) is None


def test_runtime_veth_names_fit_ifnamsiz() -> None:
    wide = ipaddress.IPv4Network("10.0.0.0/8")
    name = veth_name("abcdefgh", wide, "10.255.255.254")
    assert name == "abcdefghfffffe" and len(name) <= 15
    assert veth_address("abcdefgh", wide, name) == "10.255.255.254"
    with pytest.raises(RuntimeFailure, match="longer than 15"):
        veth_name("abcdefgh", ipaddress.IPv4Network("0.0.0.0/0"), "1.2.3.4")
