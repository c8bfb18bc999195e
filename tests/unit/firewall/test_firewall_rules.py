"""Firewall rules text, and apply/remove against a fake iptables."""

from __future__ import annotations

import subprocess
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from dynod.errors import FirewallError
from dynod.firewall import Firewall, FirewallPlan, WebPort, render
from dynod.firewall.rules import render6

PLAN = FirewallPlan(
    "dtabc12", "dtabc12br", IPv4Network("10.251.3.0/24"), IPv4Address("10.251.3.1")
)


def test_render_declares_our_chains_in_both_tables() -> None:
    text = render(PLAN)
    filter_part, nat_part = text.split("*nat\n")

    assert filter_part.startswith(
        "*filter\n:DTABC12-INPUT - [0:0]\n:DTABC12-OUT - [0:0]\n"
        ":DTABC12-FWD - [0:0]\n:DTABC12-WEB - [0:0]\n"
    )
    assert nat_part == (
        ":DTABC12-POST - [0:0]\n"
        "-A DTABC12-POST -s 10.251.3.0/24 ! -d 10.251.3.0/24 -j MASQUERADE\n"
        "COMMIT\n"
    )
    assert text.count("COMMIT\n") == 2
    # Only our chains are written to: nothing touches the built-in ones.
    rules = [line for line in text.splitlines() if line.startswith("-")]
    assert all(line.split()[1].startswith("DTABC12-") for line in rules)


def test_render_orders_the_forward_policy() -> None:
    fwd = [
        line.removeprefix("-A DTABC12-FWD ")
        for line in render(PLAN).splitlines()
        if line.startswith("-A DTABC12-FWD")
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
    inp = [line for line in render(PLAN).splitlines() if "-A DTABC12-INPUT" in line]
    assert inp == [
        "-A DTABC12-INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A DTABC12-INPUT -j DROP",
    ]


class FakeIptables:
    """Just enough ip(6)tables: rules of built-in chains, -C/-D, restore, -S."""

    def __init__(self) -> None:
        # (family, table, chain, spec); family is "4" or "6".
        self.rules: list[tuple[str, str, str, str]] = []
        self.restores: list[str] = []
        self.calls: list[list[str]] = []
        self.reject = False

    def v4(self) -> list[tuple[str, str, str]]:
        return sorted((t, c, s) for f, t, c, s in self.rules if f == "4")

    def v6(self) -> list[tuple[str, str, str]]:
        return sorted((t, c, s) for f, t, c, s in self.rules if f == "6")

    def __call__(self, argv: list[str], stdin: str | None) -> str:
        self.calls.append(argv)
        family = "6" if argv[0].startswith("ip6") else "4"
        if argv[0].endswith("-restore"):
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
                    self.rules.append((family, table, chain, " ".join(spec)))
            return ""
        args = [a for a in argv[1:] if a != "-w"]
        table = "filter"
        if args[0] == "-t":
            table, args = args[1], args[2:]
        op, chain, spec = args[0], args[1] if len(args) > 1 else "", " ".join(args[2:])
        rule = (family, table, chain, spec)
        if op == "-C" and rule not in self.rules:
            raise subprocess.CalledProcessError(1, argv)
        if op == "-D":
            self.rules.remove(rule)
        if op == "-S":
            return "".join(
                f"-A {c} {s}\n" for f, t, c, s in self.rules if c == chain and f == "4"
            )
        return ""


@pytest.fixture
def sysctls(tmp_path: Path) -> dict[str, Path]:
    paths = {
        name: tmp_path / name
        for name in (
            "ip_forward",
            "bridge-nf-call-iptables",
            "bridge-nf-call-ip6tables",
        )
    }
    for path in paths.values():
        path.write_text("0\n")
    return paths


def make(
    ipt: FakeIptables, sysctls: dict[str, Path], state: Path | None = None
) -> Firewall:
    bridge = (sysctls["bridge-nf-call-iptables"], sysctls["bridge-nf-call-ip6tables"])
    return Firewall(PLAN, ipt, sysctls["ip_forward"], bridge, state)


def values(sysctls: dict[str, Path]) -> list[str]:
    return [p.read_text() for p in sysctls.values()]


def test_apply_adds_each_jump_once(sysctls: dict[str, Path]) -> None:
    ipt = FakeIptables()
    fw = make(ipt, sysctls)

    fw.apply()
    fw.apply()

    assert ipt.v4() == [
        ("filter", "FORWARD", "-j DTABC12-FWD"),
        ("filter", "INPUT", "-i dtabc12br -j DTABC12-INPUT"),
        ("filter", "OUTPUT", "-o dtabc12br -j DTABC12-OUT"),
        ("nat", "POSTROUTING", "-j DTABC12-POST"),
    ]
    assert ipt.v6() == [
        ("filter", "FORWARD", "-i dtabc12br -j DTABC12-V6"),
        ("filter", "FORWARD", "-o dtabc12br -j DTABC12-V6"),
        ("filter", "INPUT", "-i dtabc12br -j DTABC12-V6"),
        ("filter", "OUTPUT", "-o dtabc12br -j DTABC12-V6"),
    ]
    # The second restores rewrote our chains and carried no jumps.
    assert ipt.restores[2:] == [render(PLAN), render6(PLAN)]
    assert "-I INPUT -i dtabc12br -j DTABC12-INPUT\n" in ipt.restores[0]
    assert values(sysctls) == ["1\n"] * 3


def test_remove_undoes_apply_and_restores_forwarding(sysctls: dict[str, Path]) -> None:
    ipt = FakeIptables()
    fw = make(ipt, sysctls)
    fw.apply()

    fw.remove()
    fw.remove()

    assert ipt.rules == []
    deleted = [c[-1] for c in ipt.calls if "-X" in c]
    assert deleted.count("DTABC12-INPUT") == 2
    assert {"DTABC12-FWD", "DTABC12-POST", "DTABC12-OUT", "DTABC12-WEB"} <= set(deleted)
    assert "DTABC12-V6" in deleted
    assert values(sysctls) == ["0\n"] * 3


def test_a_crashed_daemons_settings_are_restored_by_the_next(
    sysctls: dict[str, Path], tmp_path: Path
) -> None:
    state = tmp_path / "firewall.json"
    ipt = FakeIptables()
    make(ipt, sysctls, state).apply()
    # The first daemon died here; the next one applies again, then tears down.
    again = make(ipt, sysctls, state)
    again.apply()
    assert len(ipt.v4()) == 4 and len(ipt.v6()) == 4

    make(ipt, sysctls, state).remove()

    assert values(sysctls) == ["0\n"] * 3
    assert not state.exists()


def test_the_last_of_two_instances_restores_the_hosts_settings(
    sysctls: dict[str, Path], tmp_path: Path
) -> None:
    state = tmp_path / "sysctls.json"
    ipt = FakeIptables()
    first = make(ipt, sysctls, state)
    other = FirewallPlan(
        "dtfff99", "dtfff99br", IPv4Network("10.251.4.0/24"), IPv4Address("10.251.4.1")
    )
    bridge = (sysctls["bridge-nf-call-iptables"], sysctls["bridge-nf-call-ip6tables"])
    second = Firewall(other, ipt, sysctls["ip_forward"], bridge, state)
    first.apply()
    second.apply()

    first.remove()
    assert values(sysctls) == ["1\n"] * 3
    second.remove()

    assert values(sysctls) == ["0\n"] * 3
    assert not state.exists()


def test_forwarding_stays_on_while_another_instance_forwards(
    sysctls: dict[str, Path],
) -> None:
    ipt = FakeIptables()
    ipt.rules.append(("4", "filter", "FORWARD", "-j OTHER1-FWD"))
    fw = make(ipt, sysctls)
    fw.apply()

    fw.remove()

    assert values(sysctls) == ["1\n"] * 3


def test_forwarding_already_on_is_left_on(sysctls: dict[str, Path]) -> None:
    sysctls["ip_forward"].write_text("1\n")
    fw = make(FakeIptables(), sysctls)
    fw.apply()
    fw.remove()
    assert sysctls["ip_forward"].read_text() == "1\n"
    assert sysctls["bridge-nf-call-iptables"].read_text() == "0\n"


def test_a_refused_restore_raises(sysctls: dict[str, Path]) -> None:
    ipt = FakeIptables()
    ipt.reject = True

    with pytest.raises(FirewallError, match=r"dtabc12.*line 3 failed"):
        make(ipt, sysctls).apply()
    assert values(sysctls) == ["0\n"] * 3


def test_a_missing_bridge_setting_is_an_error(sysctls: dict[str, Path]) -> None:
    sysctls["bridge-nf-call-iptables"].unlink()
    with pytest.raises(FirewallError, match="br_netfilter"):
        make(FakeIptables(), sysctls).apply()


def test_web_ports_replace_only_the_web_chain(sysctls: dict[str, Path]) -> None:
    ipt = FakeIptables()
    fw = make(ipt, sysctls)
    fw.apply([WebPort(IPv4Address("10.251.3.9"), 4000)])
    assert (
        "-A DTABC12-WEB -d 10.251.3.9/32 -p tcp --dport 4000 -j ACCEPT"
        in (ipt.restores[0])
    )

    fw.allow_web([WebPort(IPv4Address("10.251.3.7"), 5000)])
    fw.allow_web([WebPort(IPv4Address("10.251.3.7"), 5000)])

    assert ipt.restores[2:] == [
        "*filter\n:DTABC12-WEB - [0:0]\n"
        "-A DTABC12-WEB -d 10.251.3.7/32 -p tcp --dport 5000 -j ACCEPT\nCOMMIT\n"
    ]


def test_host_to_dyno_is_replies_and_web_ports_only() -> None:
    out = [line for line in render(PLAN).splitlines() if "-A DTABC12-OUT" in line]
    assert out == [
        "-A DTABC12-OUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A DTABC12-OUT -j DTABC12-WEB",
        "-A DTABC12-OUT -p tcp -j REJECT --reject-with tcp-reset",
        "-A DTABC12-OUT -j DROP",
    ]


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
    udp = "-A DTABCDE-FWD -i dtabcdebr -d 192.168.1.1/32 -p udp --dport 53 -j ACCEPT"
    drop = "-A DTABCDE-FWD -i dtabcdebr -d 192.168.0.0/16 -j DROP"
    assert udp in lines and drop in lines
    # The exception comes before the drop, or it would never match.
    assert lines.index(udp) < lines.index(drop)
