"""One daemon for the whole escape suite, with a victim and an attacker app."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from escape_support import World

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
        for app in ("victim", "attacker"):
            daemon.ctl("deploy", "-a", app, str(EXAMPLE_APP))
            daemon.wait_for(app, "/", f"Hello from web.1 of {app}")
        world = World(daemon, "attacker", "victim", secret)
        ids = world.inside("result = [os.getuid(), os.getgid()]")
        world.facts["uid"], world.facts["gid"] = ids
        yield world
    finally:
        daemon.destroy()
        shutil.rmtree(base, ignore_errors=True)
