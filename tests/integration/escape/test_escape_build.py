"""A build dyno is held like any other: app code runs there too.

The app's own ``npm run build`` script is arbitrary code in the build dyno; it
probes its privileges and tries a mount, a new user namespace, the host's
services and the local network, and reaches the outside world (where package
registries are); the deploy's output carries its verdict.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from escape_support import PORT, PRELUDE, Targets, World, parse

pytestmark = pytest.mark.integration

PROBE = """
status = dict(l.split(':\\t') for l in open('/proc/self/status').read().splitlines()
              if l.startswith(('Cap', 'NoNewPrivs', 'Seccomp:')))
result = {
    "uid": os.getuid(),
    "caps": sorted({int(status[k], 16) for k in status if k.startswith("Cap")}),
    "nnp": status["NoNewPrivs"],
    "seccomp": status["Seccomp"],
    "mount": sys_("mount", b"none", b"/tmp", b"tmpfs", 0, None),
    "userns": sys_("unshare", 0x10000000),
    "host": connect(GATEWAY, HOST_PORT),
    "local": connect(LOCAL, PORT),
    "metadata": connect(METADATA, PORT),
    "outside": connect(OUTSIDE, PORT),
}
say(result)
"""


def test_build_scripts_run_as_confined_as_dynos(
    world: World, targets: Targets, tmp_path: Path
) -> None:
    service = socket.socket()
    service.bind(("0.0.0.0", 0))
    service.listen(4)
    with service:
        port = service.getsockname()[1]
        source = tmp_path / "src"
        source.mkdir()
        (source / "package.json").write_text(
            json.dumps(
                {
                    "name": "probe",
                    "version": "1.0.0",
                    "private": True,
                    "scripts": {"build": "python3 probe.py"},
                }
            )
        )
        (source / "probe.py").write_text(
            PRELUDE
            + f"GATEWAY, HOST_PORT, PORT = {world.gateway!r}, {port}, {PORT}\n"
            + f"LOCAL, METADATA = {targets.local!r}, {targets.metadata!r}\n"
            + f"OUTSIDE = {targets.outside!r}\n"
            + PROBE
        )
        (source / "Procfile").write_text("worker: sleep 600\n")
        world.daemon.ctl("apps:create", "builder")
        deployed = world.daemon.ctl("deploy", "-a", "builder", str(source))

    result = parse(deployed.stdout)
    assert result is not None, deployed.stdout
    assert result["uid"] >= 1000
    assert result["caps"] == [0]
    assert (result["nnp"], result["seccomp"]) == ("1", "2")
    assert (result["mount"], result["userns"]) == ("EPERM", "EPERM")
    assert [result[k] for k in ("host", "local", "metadata")] == ["timeout"] * 3
    assert result["outside"] == "ok"
