"""One daemon for the whole escape suite, with a victim and an attacker app,
and the network targets attempts aim at.

The victim is the example app, holding a secret config var; the attacker's web
process runs whatever attempt it is sent, and its one-offs run them too, so
the ``inside`` fixture runs a test's attempt both ways.
"""

from __future__ import annotations

import random
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from escape_support import (
    ESCAPE_WEB_APP,
    PORT,
    Runner,
    Targets,
    World,
    add_target,
    remove_target,
)

from tests.support.daemon import EXAMPLE_APP, make_daemon
from tests.support.names import new_instance


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


@pytest.fixture(scope="session")
def targets(world: World) -> Iterator[Targets]:
    x = random.randrange(2, 250)
    names = local, metadata, outside = new_instance(), new_instance(), new_instance()
    procs: list[subprocess.Popen[str]] = []
    host = socket.socket()
    abstract = socket.socket(socket.AF_UNIX)
    try:
        host.bind(("0.0.0.0", 0))
        host.listen(64)
        abstract_name = "\0" + local + "-abstract"
        abstract.bind(abstract_name)
        abstract.listen(4)
        add_target(local, f"10.253.{x}.1/24", f"10.253.{x}.2/24", procs)
        add_target(metadata, f"169.254.{x}.1/24", f"169.254.{x}.254/24", procs)
        add_target(outside, f"198.18.{x}.1/24", f"198.18.{x}.2/24", procs)
        t = Targets(
            host.getsockname()[1],
            f"10.253.{x}.2",
            f"169.254.{x}.254",
            f"198.18.{x}.2",
            abstract_name,
        )
        # Each target answers the host: only the firewall can stop the dyno.
        for addr in (t.local, t.metadata, t.outside):
            socket.create_connection((addr, PORT), timeout=2).close()
        yield t
    finally:
        host.close()
        abstract.close()
        for proc in procs:
            proc.kill()
            proc.wait()
            if proc.stdout:
                proc.stdout.close()
        for name in names:
            remove_target(name)
