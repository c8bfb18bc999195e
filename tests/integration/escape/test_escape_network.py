"""Escape attempts over the network, from inside a dyno.

The targets are the suite's own (the ``targets`` fixture): a service on the
host, an abstract unix socket, a "local network" namespace, a "metadata" one
and an "outside world" one.  A drop shows as "timeout"; a refusal
("ECONNREFUSED") or "EHOSTUNREACH" would be a different reason and fails.  The
outside world must be reachable, or every drop here could be a dyno with no
network at all.
"""

from __future__ import annotations

import socket
import subprocess
import time

import pytest
from escape_support import PORT, Runner, Targets, World, read_result

pytestmark = pytest.mark.integration


def test_reach_a_host_service_through_the_gateway(
    world: World, targets: Targets, inside: Runner
) -> None:
    # The host itself reaches it: only the firewall can stop the dyno.
    socket.create_connection((world.gateway, targets.host_port), timeout=2).close()
    got = inside(f"result = connect({world.gateway!r}, {targets.host_port})")
    assert got == "timeout"


def test_reach_the_hosts_uplink_address(targets: Targets, inside: Runner) -> None:
    # The host's address on another interface: delivered locally, so dropped too.
    uplink = (
        subprocess.run(
            ["ip", "-4", "-o", "route", "get", "192.0.2.1"],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.split(" src ")[1]
        .split()[0]
    )
    socket.create_connection((uplink, targets.host_port), timeout=2).close()
    assert inside(f"result = connect({uplink!r}, {targets.host_port})") == ("timeout")


def test_reach_the_host_over_ipv6_link_local(
    world: World, targets: Targets, inside: Runner
) -> None:
    service = socket.socket(socket.AF_INET6)
    service.bind(("::", 0))
    service.listen(4)
    with service:
        port = service.getsockname()[1]
        # The bridge's link-local address: every [::] service of the host has it.
        target = bridge_link_local(world) + "%eth0"
        # Retried while the dyno's own link-local address is still tentative
        # (duplicate address detection, RFC 4862 5.4) and cannot be a source.
        got = inside(
            "for _ in range(40):\n"
            f"    result = connect({target!r}, {port})\n"
            "    if result != 'EADDRNOTAVAIL':\n"
            "        break\n"
            "    time.sleep(0.1)\n"
        )
    assert got == "timeout"


def bridge_link_local(world: World) -> str:
    text = subprocess.run(
        ["ip", "-6", "-o", "addr", "show", "dev", world.daemon.instance + "br"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return text.split("inet6 ")[1].split("/")[0]


def test_reach_a_local_network_target(targets: Targets, inside: Runner) -> None:
    assert inside(f"result = connect({targets.local!r}, {PORT})") == "timeout"


def test_the_outside_world_is_reachable(targets: Targets, inside: Runner) -> None:
    # Not an escape: what a dyno may do, through the host's NAT.
    assert inside(f"result = connect({targets.outside!r}, {PORT})") == "ok"


def test_reach_a_metadata_target(targets: Targets, inside: Runner) -> None:
    assert inside(f"result = connect({targets.metadata!r}, {PORT})") == ("timeout")


def test_reach_another_apps_web_dyno(world: World, inside: Runner) -> None:
    addr, port = world.web_dyno(world.victim)
    socket.create_connection((addr, port), timeout=2).close()
    assert inside(f"result = connect({addr!r}, {port})") == "timeout"


def test_reach_a_dyno_of_the_same_app(world: World, inside: Runner) -> None:
    # Two web dynos, so the web dyno running the attempt has a sibling too; an
    # attempt skips its own address.
    daemon = world.daemon
    daemon.ctl("ps:scale", "-a", world.attacker, "web=2")
    try:
        deadline = time.monotonic() + 30
        while len(world.routes()["apps"][world.attacker]["dynos"]) < 2:
            assert time.monotonic() < deadline, "web.2 never took traffic"
            time.sleep(0.1)
        dynos = [
            (d["addr"], int(d["port"]))
            for d in world.routes()["apps"][world.attacker]["dynos"]
        ]
        result = inside(
            "def own(addr):\n"
            "    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:\n"
            "        s.connect((addr, 9))  # UDP: picks a source, sends nothing\n"
            "        return s.getsockname()[0] == addr\n"
            f"result = [connect(a, p) for a, p in {dynos!r} if not own(a)]"
        )
    finally:
        # Back to one web dyno, and only once web.2 is gone may the other tests
        # count on web.1 answering.
        daemon.ctl("ps:scale", "-a", world.attacker, "web=1")
        deadline = time.monotonic() + 60
        while len(daemon.ctl_json("ps", "-a", world.attacker)) > 1:
            assert time.monotonic() < deadline, "web.2 never stopped"
            time.sleep(0.1)
    assert result and set(result) == {"timeout"}


def test_reach_a_host_abstract_socket(targets: Targets, inside: Runner) -> None:
    # Abstract unix sockets belong to a network namespace: not the dyno's.
    got = inside(
        f"result = attempt(lambda: socket.socket(socket.AF_UNIX).connect("
        f"{targets.abstract!r}))"
    )
    assert got == "ECONNREFUSED"


def test_host_reaches_a_dyno_only_on_its_port(world: World) -> None:
    # A one-off listens on a port of its own; not even the host may open it.
    proc = world.start_inside(
        "s = socket.socket(); s.bind(('0.0.0.0', 7000)); s.listen(4)\n"
        "addr = subprocess.run(['hostname', '-I'], capture_output=True,"
        " text=True).stdout.split()[0]\n"
        "say(addr)\n"
        "time.sleep(8)\n"
    )
    try:
        addr = read_result(proc)
        # Refused by the firewall at once (the dyno itself would accept).
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((addr, 7000), timeout=1.5)
    finally:
        proc.kill()
        proc.communicate()
