"""Escape attempts from the attacker's web dyno, which runs the code it is sent.

Tests taking the ``inside`` fixture, in every module of the suite, run their
attempt from the web dyno too (``[web-dyno]`` ids); these are the attempts
that only make sense there.  A web dyno differs from a one-off in what
matters here: it listens on ``$PORT``, the router reaches it, and it is the
process an attacker gets by exploiting an app.
"""

from __future__ import annotations

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
