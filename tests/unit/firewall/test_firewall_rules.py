"""Firewall rules text, and apply/remove against a fake iptables."""

from __future__ import annotations

import subprocess
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from dynod.errors import FirewallError
from dynod.firewall import Firewall, FirewallPlan, render

PLAN = FirewallPlan(
    "dtabc12", "dtabc12br", IPv4Network("10.251.3.0/24"), IPv4Address("10.251.3.1")
)


def test_render_declares_our_chains_in_both_tables() -> None:
    text = render(PLAN)
    filter_part, nat_part = text.split("*nat\n")

    assert filter_part.startswith(
        "*filter\n:dtabc12-INPUT - [0:0]\n:dtabc12-FWD - [0:0]\n"
    )
    assert nat_part == (
        ":dtabc12-POST - [0:0]\n"
        "-A dtabc12-POST -s 10.251.3.0/24 ! -d 10.251.3.0/24 -j MASQUERADE\n"
        "COMMIT\n"
    )
    assert text.count("COMMIT\n") == 2
    # Only our chains are written to: nothing touches the built-in ones.
    rules = [line for line in text.splitlines() if line.startswith("-")]
    assert all(line.split()[1].startswith("dtabc12-") for line in rules)


def test_render_orders_the_forward_policy() -> None:
    fwd = [
        line.removeprefix("-A dtabc12-FWD ")
        for line in render(PLAN).splitlines()
        if line.startswith("-A dtabc12-FWD")
    ]

    states = "-m conntrack --ctstate ESTABLISHED,RELATED"
    assert fwd[0] == "-i dtabc12br -o dtabc12br -j DROP"
    assert fwd[1:3] == [
        f"-o dtabc12br {states} -j ACCEPT",
        f"-i dtabc12br {states} -j ACCEPT",
    ]
    assert fwd[3:8] == [
        f"-i dtabc12br -d {net} -j DROP"
        for net in (
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
            "169.254.0.0/16",
        )
    ]
    assert fwd[8:] == ["-i dtabc12br -j ACCEPT"]


def test_render_drops_everything_but_replies_to_the_host() -> None:
    inp = [line for line in render(PLAN).splitlines() if "-A dtabc12-INPUT" in line]
    assert inp == [
        "-A dtabc12-INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A dtabc12-INPUT -j DROP",
    ]


class FakeIptables:
    """Just enough iptables: rules of built-in chains, -C/-D, restore, -S."""

    def __init__(self) -> None:
        self.rules: list[tuple[str, str, str]] = []
        self.restores: list[str] = []
        self.calls: list[list[str]] = []
        self.reject = False

    def __call__(self, argv: list[str], stdin: str | None) -> str:
        self.calls.append(argv)
        if argv[0] == "iptables-restore":
            assert "--noflush" in argv and stdin is not None
            if self.reject:
                raise subprocess.CalledProcessError(2, argv, "", "line 3 failed")
            self.restores.append(stdin)
            table = ""
            for line in stdin.splitlines():
                if line.startswith("*"):
                    table = line[1:]
                elif line.split()[0] in ("-I", "-A") and "-" not in line.split()[1]:
                    _, chain, *spec = line.split()
                    self.rules.append((table, chain, " ".join(spec)))
            return ""
        args = [a for a in argv[1:] if a != "-w"]
        table = "filter"
        if args[0] == "-t":
            table, args = args[1], args[2:]
        op, chain, spec = args[0], args[1] if len(args) > 1 else "", " ".join(args[2:])
        if op == "-C" and (table, chain, spec) not in self.rules:
            raise subprocess.CalledProcessError(1, argv)
        if op == "-D":
            self.rules.remove((table, chain, spec))
        if op == "-S":
            return "".join(f"-A {c} {s}\n" for t, c, s in self.rules if c == chain)
        return ""


@pytest.fixture
def forward(tmp_path: Path) -> Path:
    path = tmp_path / "ip_forward"
    path.write_text("0\n")
    return path


def test_apply_adds_each_jump_once(forward: Path) -> None:
    ipt = FakeIptables()
    fw = Firewall(PLAN, ipt, forward)

    fw.apply()
    fw.apply()

    assert sorted(ipt.rules) == [
        ("filter", "FORWARD", "-j dtabc12-FWD"),
        ("filter", "INPUT", "-i dtabc12br -j dtabc12-INPUT"),
        ("nat", "POSTROUTING", "-j dtabc12-POST"),
    ]
    # The second restore rewrote our chains and carried no jumps.
    assert ipt.restores[1] == render(PLAN)
    jumps = "-I INPUT -i dtabc12br -j dtabc12-INPUT\n-I FORWARD -j dtabc12-FWD\n"
    assert f"{jumps}COMMIT\n*nat" in ipt.restores[0]
    assert forward.read_text() == "1\n"


def test_remove_undoes_apply_and_restores_forwarding(forward: Path) -> None:
    ipt = FakeIptables()
    fw = Firewall(PLAN, ipt, forward)
    fw.apply()

    fw.remove()
    fw.remove()

    assert ipt.rules == []
    deleted = [c[-1] for c in ipt.calls if "-X" in c]
    assert deleted.count("dtabc12-INPUT") == 2
    assert {"dtabc12-FWD", "dtabc12-POST"} <= set(deleted)
    assert forward.read_text() == "0\n"


def test_forwarding_stays_on_while_another_instance_forwards(forward: Path) -> None:
    ipt = FakeIptables()
    ipt.rules.append(("filter", "FORWARD", "-j other1-FWD"))
    fw = Firewall(PLAN, ipt, forward)
    fw.apply()

    fw.remove()

    assert forward.read_text() == "1\n"


def test_forwarding_already_on_is_left_on(forward: Path) -> None:
    forward.write_text("1\n")
    fw = Firewall(PLAN, FakeIptables(), forward)
    fw.apply()
    fw.remove()
    assert forward.read_text() == "1\n"


def test_a_refused_restore_raises(forward: Path) -> None:
    ipt = FakeIptables()
    ipt.reject = True

    with pytest.raises(FirewallError, match=r"dtabc12.*line 3 failed"):
        Firewall(PLAN, ipt, forward).apply()
    assert forward.read_text() == "0\n"


def test_resolvers_in_private_ranges_stay_reachable_on_port_53() -> None:
    from ipaddress import IPv4Address, IPv4Network

    from dynod.firewall.rules import FirewallPlan, render

    plan = FirewallPlan(
        "dtabcde",
        "dtabcdebr",
        IPv4Network("10.9.0.0/24"),
        IPv4Address("10.9.0.1"),
        dns_servers=(IPv4Address("192.168.1.1"),),
    )
    lines = render(plan).splitlines()
    udp = "-A dtabcde-FWD -i dtabcdebr -d 192.168.1.1/32 -p udp --dport 53 -j ACCEPT"
    drop = "-A dtabcde-FWD -i dtabcdebr -d 192.168.0.0/16 -j DROP"
    assert udp in lines and drop in lines
    # The exception comes before the drop, or it would never match.
    assert lines.index(udp) < lines.index(drop)
