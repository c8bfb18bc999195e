"""Escape attempts from the attacker's web dyno, which runs the code it is sent.

The privilege attempts run from the web dyno through the ``inside`` fixture
(``[web-dyno]`` ids in ``test_escape_privileges.py``); these are the
filesystem and network attempts, whose one-off versions live beside the
others of their kind.  A web dyno differs from a one-off in what matters
here: it listens on ``$PORT``, the router reaches it, and it is the process
an attacker gets by exploiting an app.
"""

from __future__ import annotations

import socket

import pytest
from escape_support import World

pytestmark = pytest.mark.integration


def test_attempts_sent_to_the_web_dyno_run_in_its_web_process(world: World) -> None:
    # Otherwise every [web-dyno] test would prove nothing about web dynos.
    snippet = "result = [os.environ['DYNO'], socket.gethostname()]"
    assert world.in_web(snippet) == ["web.1", "web.1"]
    dyno, hostname = world.inside(snippet)
    assert dyno.startswith("run.") and hostname == dyno


def test_read_the_hosts_pid_1_environment_from_a_web_dyno(world: World) -> None:
    # PID 1 is the web dyno's own tini; its environment is the dyno's own.
    cmd, own, pids = world.in_web(
        "result = [open('/proc/1/cmdline', 'rb').read().split(b'\\0')[0].decode(),"
        " b'DYNO=web.1' in open('/proc/1/environ', 'rb').read().split(b'\\0'),"
        " sorted(int(p) for p in os.listdir('/proc') if p.isdigit())]"
    )
    assert (cmd, own) == ("/usr/bin/tini", True)
    assert max(pids) < 100


def test_read_another_apps_config_vars_from_a_web_dyno(world: World) -> None:
    found = world.in_web(
        "found = []\n"
        "for p in os.listdir('/proc'):\n"
        "    try:\n"
        "        found.append(open(f'/proc/{p}/environ', 'rb').read().decode())\n"
        "    except OSError:\n"
        "        pass\n"
        "result = '\\n'.join(found)"
    )
    assert "DYNO=web.1" in found  # the search did read environments
    assert world.secret not in found


def test_reach_the_api_socket_from_a_web_dyno(world: World) -> None:
    sockets = [
        str(world.daemon.run_dir / "api.sock"),
        "/run/dynod/api.sock",
        "/var/run/docker.sock",
        "/run/containerd/containerd.sock",
    ]
    result = world.in_web(
        f"result = [attempt(lambda p: socket.socket(socket.AF_UNIX).connect(p), p)"
        f" for p in {sockets!r}]"
    )
    assert result == ["ENOENT"] * len(sockets)


def test_reach_a_host_service_through_the_gateway_from_a_web_dyno(
    world: World,
) -> None:
    service = socket.socket()
    service.bind(("0.0.0.0", 0))
    service.listen(4)
    with service:
        port = service.getsockname()[1]
        # The host itself reaches it: only the firewall can stop the dyno.
        socket.create_connection((world.gateway, port), timeout=2).close()
        got = world.in_web(f"result = connect({world.gateway!r}, {port})")
    assert got == "timeout"


def test_reach_another_apps_web_dyno_from_a_web_dyno(world: World) -> None:
    addr, port = world.web_dyno(world.victim)
    socket.create_connection((addr, port), timeout=2).close()
    assert world.in_web(f"result = connect({addr!r}, {port})") == "timeout"
