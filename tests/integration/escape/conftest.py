"""One daemon for the whole escape suite, with a victim and an attacker app.

The victim is the example app, holding a secret config var; the attacker's web
process runs whatever attempt it is sent, and its one-offs run them too, so
the ``inside`` fixture runs a test's attempt both ways.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from escape_support import ESCAPE_WEB_APP, Runner, World

from tests.support.daemon import EXAMPLE_APP, make_daemon


@pytest.fixture(scope="session")
def world(shared_stack_dir: Path) -> Iterator[World]:
    base = Path(tempfile.mkdtemp(prefix="dynod-escape-"))
    daemon = make_daemon(base, shared_stack_dir)
    secret = "s3cret-" + secrets.token_hex(8)
    try:
        daemon.start()
        for app in ("victim", "attacker"):
            daemon.ctl("apps:create", app)
        daemon.ctl("config:set", "-a", "victim", f"VICTIM_SECRET={secret}")
        for app, source in (("victim", EXAMPLE_APP), ("attacker", ESCAPE_WEB_APP)):
            daemon.ctl("deploy", "-a", app, str(source))
            daemon.wait_for(app, "/", f"Hello from web.1 of {app}")
        world = World(daemon, "attacker", "victim", secret)
        ids = world.inside("result = [os.getuid(), os.getgid()]")
        world.facts["uid"], world.facts["gid"] = ids
        yield world
    finally:
        daemon.destroy()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["dynoctl-run", "web-dyno"])
def inside(world: World, request: pytest.FixtureRequest) -> Runner:
    """Runs an attempt in a one-off dyno, then (second id) in the web dyno."""
    return world.inside if request.param == "dynoctl-run" else world.in_web
