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
