"""The firewall on the real kernel, between network namespaces this test makes.

Topology (X random)::

    ns <i>a 10.251.X.2 ─┐
    ns <i>b 10.251.X.3 ─┴─ bridge <i>br 10.251.X.1   (the dyno bridge)
    ns <i>p 10.252.X.2 ─── bridge <i>pr 10.252.X.1   ("private network" target)
    ns <i>u 198.51.100.N ─ bridge <i>pu              ("outside world" target)

Traffic goes only to addresses on these bridges and in these namespaces.
"""

from __future__ import annotations

import random
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from dynod.firewall import Firewall, FirewallPlan, WebPort

pytestmark = pytest.mark.integration

PORT = 18080
LISTENER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    print(peer[0], flush=True)
    c.close()
"""
PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.4).close()
except OSError:
    sys.exit(1)
"""


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@dataclass
class Net:
    instance: str
    plan: FirewallPlan
    addrs: dict[str, str]
    listeners: dict[str, subprocess.Popen[str]]

    def reaches(self, ns: str, addr: str, port: int = PORT) -> bool:
        probe = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.instance + ns,
                "/usr/bin/python3",
                "-c",
                PROBE,
                addr,
                str(port),
            ],
            capture_output=True,
            check=False,
        )
        return probe.returncode == 0

    def last_peer(self, ns: str) -> str:
        out = self.listeners[ns].stdout
        assert out is not None
        ready, _, _ = select.select([out], [], [], 2)
        assert ready, f"listener in {ns} saw no connection"
        return out.readline().strip()


@pytest.fixture
def net(instance: str) -> Iterator[Net]:
    i = instance
    x = random.randrange(2, 250)
    base = random.randrange(0, 16) * 16
    bridges = {
        "br": f"10.251.{x}.1/24",
        "pr": f"10.252.{x}.1/24",
        "pu": f"198.51.100.{base + 1}/28",
    }
    members = {
        "a": ("br", f"10.251.{x}.2/24"),
        "b": ("br", f"10.251.{x}.3/24"),
        "p": ("pr", f"10.252.{x}.2/24"),
        "u": ("pu", f"198.51.100.{base + 2}/28"),
    }
    listeners: dict[str, subprocess.Popen[str]] = {}
    try:
        for br, cidr in bridges.items():
            sh("ip", "link", "add", i + br, "type", "bridge")
            sh("ip", "addr", "add", cidr, "dev", i + br)
            sh("ip", "link", "set", i + br, "up")
        for ns, (br, cidr) in members.items():
            sh("ip", "netns", "add", i + ns)
            sh(
                "ip",
                "link",
                "add",
                f"{i}{ns}0",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                i + ns,
            )
            sh("ip", "link", "set", f"{i}{ns}0", "master", i + br, "up")
            gateway = bridges[br].split("/")[0]
            for cmd in (
                ["ip", "addr", "add", cidr, "dev", "eth0"],
                ["ip", "link", "set", "lo", "up"],
                ["ip", "link", "set", "eth0", "up"],
                ["ip", "route", "add", "default", "via", gateway],
            ):
                sh("ip", "netns", "exec", i + ns, *cmd)
            listeners[ns] = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    i + ns,
                    "/usr/bin/python3",
                    "-c",
                    LISTENER,
                    str(PORT),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
        for proc in listeners.values():
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"

        plan = FirewallPlan(
            i, i + "br", IPv4Network(f"10.251.{x}.0/24"), IPv4Address(f"10.251.{x}.1")
        )
        addrs = {ns: cidr.split("/")[0] for ns, (_, cidr) in members.items()}
        addrs |= {br: cidr.split("/")[0] for br, cidr in bridges.items()}
        yield Net(i, plan, addrs, listeners)
    finally:
        for proc in listeners.values():
            proc.kill()
            proc.wait()
            if proc.stdout:
                proc.stdout.close()
        for ns in members:
            subprocess.run(["ip", "netns", "del", i + ns], check=False)
        for name in [i + br for br in bridges] + [f"{i}{ns}0" for ns in members]:
            subprocess.run(
                ["ip", "link", "del", name], check=False, capture_output=True
            )


@pytest.fixture
def firewall(net: Net) -> Iterator[Firewall]:
    fw = Firewall(net.plan)
    yield fw
    fw.remove()


def rules(instance: str) -> list[str]:
    out = []
    for table in ("filter", "nat"):
        text = subprocess.run(
            ["iptables", "-t", table, "-S"], capture_output=True, text=True, check=True
        ).stdout
        out += [line for line in text.splitlines() if instance.upper() in line]
    return out


def rules6(instance: str) -> list[str]:
    text = subprocess.run(
        ["ip6tables", "-S"], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in text.splitlines() if instance.upper() in line]


def drops(net: Net, network: str) -> int:
    """Packets our forward chain dropped on the way to ``network``."""
    text = subprocess.run(
        ["iptables", "-L", net.plan.forward_chain, "-v", "-x", "-n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (line,) = [ln for ln in text.splitlines() if "DROP" in ln and network in ln]
    return int(line.split()[0])


def test_dynos_reach_only_the_outside(net: Net, firewall: Firewall) -> None:
    gw = socket.socket()
    gw.bind((net.addrs["br"], 0))
    gw.listen(4)
    try:
        # Without the rules the bridge is wide open (so the checks below can fail).
        gw_port = gw.getsockname()[1]
        assert net.reaches("a", net.addrs["br"], gw_port)
        assert net.reaches("a", net.addrs["b"])
        assert net.last_peer("b") == net.addrs["a"]

        started = time.monotonic()
        firewall.apply([WebPort(IPv4Address(net.addrs["a"]), PORT)])
        print(f"\nfirewall apply: {(time.monotonic() - started) * 1000:.1f} ms")

        # Dyno → host: blocked; host → a web dyno's port: allowed.
        assert not net.reaches("a", net.addrs["br"], gw_port)
        socket.create_connection((net.addrs["a"], PORT), timeout=1).close()
        assert net.last_peer("a") == net.addrs["br"]
        # Host → a dyno that is not a routed web dyno: refused by the firewall.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((net.addrs["b"], PORT), timeout=0.5)
        # Dyno → dyno: blocked.
        assert not net.reaches("a", net.addrs["b"])
        # Dyno → a private network: blocked by our rule.
        assert not net.reaches("a", net.addrs["p"])
        assert drops(net, "10.0.0.0/8") > 0
        # Dyno → the outside: allowed, and masqueraded as the host.
        assert net.reaches("a", net.addrs["u"])
        assert net.last_peer("u") == net.addrs["pu"]
    finally:
        gw.close()


def test_apply_is_idempotent_and_remove_is_complete(
    net: Net, firewall: Firewall
) -> None:
    forward_before = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    firewall.apply()
    once = rules(net.instance)
    firewall.apply()

    assert rules(net.instance) == once
    # Declarations, INPUT, OUT, FWD, POST, jumps.
    assert len(once) == 5 + 2 + 4 + 9 + 1 + 4
    assert len(rules6(net.instance)) == 1 + 1 + 4

    firewall.remove()
    firewall.remove()
    assert rules(net.instance) == []
    assert rules6(net.instance) == []
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == forward_before


def test_dynos_reach_no_host_address_on_any_interface(
    net: Net, firewall: Firewall
) -> None:
    # The host's own address on another interface (the "outside" bridge).
    service = socket.socket()
    service.bind((net.addrs["pu"], 0))
    service.listen(4)
    with service:
        port = service.getsockname()[1]
        assert net.reaches("a", net.addrs["pu"], port)
        firewall.apply()
        assert not net.reaches("a", net.addrs["pu"], port)


def link_local(netns: str | None, device: str) -> str:
    """The device's IPv6 link-local address, once duplicate detection is over."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        text = subprocess.run(
            [*prefix, "ip", "-6", "-o", "addr", "show", "dev", device],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        if "fe80::" in text and "tentative" not in text:
            return text.split("inet6 ")[1].split("/")[0]
        time.sleep(0.1)
    pytest.fail(f"{device} got no usable link-local address: {text!r}")


def test_dynos_reach_the_host_over_no_ipv6_link_local(
    net: Net, firewall: Firewall
) -> None:
    # The bridge's link-local address: any [::] service of the host is on it.
    target = link_local(None, net.instance + "br") + "%eth0"
    link_local(net.instance + "a", "eth0")
    service = socket.socket(socket.AF_INET6)
    service.bind(("::", 0))
    service.listen(4)
    with service:
        port = service.getsockname()[1]
        assert net.reaches("a", target, port)
        firewall.apply()
        assert not net.reaches("a", target, port)


def test_rules_are_rebuilt_after_a_crash(net: Net, tmp_path: Path) -> None:
    state = tmp_path / "firewall.json"
    first = Firewall(net.plan, state_file=state)
    first.apply()
    expected = rules(net.instance)
    try:
        # The daemon "crashed": someone deleted a jump and a rule meanwhile.
        sh("iptables", "-D", "INPUT", "-i", net.plan.bridge, "-j", net.plan.input_chain)
        sh("iptables", "-D", net.plan.input_chain, "-j", "DROP")

        Firewall(net.plan, state_file=state).apply()

        assert sorted(rules(net.instance)) == sorted(expected)
    finally:
        Firewall(net.plan, state_file=state).remove()
    assert rules(net.instance) == [] and rules6(net.instance) == []
