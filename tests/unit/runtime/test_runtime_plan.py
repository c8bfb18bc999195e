"""Launch plans, the exec'd command line, the listen probe and the wire format."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from dynod.runtime import wire
from dynod.runtime.launcher import INIT, PROFILE_SCRIPT, command
from dynod.runtime.plan import STACK_PATH, LaunchPlan
from dynod.runtime.probe import connected, listening
from dynod.runtime.spec import SIZES, BindMount, DynoKind, DynoSpec


def _spec(kind: DynoKind = DynoKind.FORMATION, **env: str) -> DynoSpec:
    return DynoSpec(
        dyno_id="abc",
        app="demo",
        name="web.1",
        kind=kind,
        argv=("python", "app.py"),
        env=dict(env),
        size=SIZES["standard-1x"],
        uid=200001,
        gid=200001,
        stack_dir=Path("/stacks/rootfs"),
        slug_dir=Path("/slugs/x") if kind is not DynoKind.BUILD else None,
        binds=(BindMount(Path("/cache/demo"), "/cache", readonly=False),),
    )


def test_runtime_plan_round_trips_and_adds_path() -> None:
    plan = LaunchPlan.from_spec(_spec(PORT="5000"), ["/cg/a"], "10.0.0.2/24")
    assert plan.env == {"PORT": "5000", "PATH": STACK_PATH}
    assert LaunchPlan.from_json(plan.to_json()) == plan
    assert not plan.attached


def test_runtime_plan_keeps_the_specs_path() -> None:
    plan = LaunchPlan.from_spec(_spec(PATH="/app/bin:/usr/bin"), [])
    assert plan.env["PATH"] == "/app/bin:/usr/bin"


def test_runtime_command_wraps_formation_but_not_builds() -> None:
    plan = LaunchPlan.from_spec(_spec(), [])
    assert command(plan) == [
        INIT,
        "--",
        "/bin/bash",
        "-c",
        PROFILE_SCRIPT,
        "--",
        "python",
        "app.py",
    ]
    build = LaunchPlan.from_spec(_spec(DynoKind.BUILD), [])
    assert build.build and build.slug_dir is None
    assert command(build) == [INIT, "--", "python", "app.py"]


def test_runtime_probe_reads_listen_sockets(tmp_path: Path) -> None:
    net = tmp_path / "42" / "net"
    net.mkdir(parents=True)
    header = "  sl  local_address rem_address   st\n"
    # 0x1388 = 5000 listening; 0x1F90 = 8080 only connected (01 = ESTABLISHED).
    (net / "tcp").write_text(
        header + "   0: 00000000:1388 00000000:0000 0A\n"
        "   1: 0100007F:1F90 0100007F:D2F0 01\n"
    )
    (net / "tcp6").write_text(
        header + "   0: " + "0" * 32 + ":0BB8 " + "0" * 32 + ":0000 0A\n"
    )
    assert listening(42, 5000, proc=tmp_path)
    assert listening(42, 3000, proc=tmp_path)
    assert not listening(42, 8080, proc=tmp_path)
    assert not listening(43, 5000, proc=tmp_path)


def test_runtime_wire_carries_messages_and_fds(tmp_path: Path) -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b, open(tmp_path / "f", "w") as f:
        wire.send(a, {"op": "x", "n": 1}, [f.fileno()])
        wire.send(a, {"op": "y"})
        message, fds = wire.recv(b)
        assert message == {"op": "x", "n": 1} and len(fds) == 1
        os.write(fds[0], b"via fd")
        os.close(fds[0])
        assert wire.recv(b) == ({"op": "y"}, [])
        a.close()
        assert wire.recv(b) == (None, [])
    assert (tmp_path / "f").read_text() == "via fd"


def test_runtime_probe_counts_established_connections(tmp_path: Path) -> None:
    net = tmp_path / "7" / "net"
    net.mkdir(parents=True)
    header = "  sl  local_address rem_address   st\n"
    # Two requests in flight on 5000 (one over IPv6), one closing (08 =
    # CLOSE_WAIT), the listener itself, and a connection out from 5001.
    (net / "tcp").write_text(
        header + "   0: 00000000:1388 00000000:0000 0A\n"
        "   1: 0200000A:1388 0100000A:D2F0 01\n"
        "   2: 0200000A:1388 0100000A:D2F1 08\n"
        "   3: 0200000A:1389 0100000A:0050 01\n"
    )
    (net / "tcp6").write_text(
        header + "   0: " + "0" * 32 + ":1388 " + "0" * 32 + ":D2F2 01\n"
    )
    assert connected(7, 5000, proc=tmp_path) == 2
    assert connected(7, 5001, proc=tmp_path) == 1
    assert connected(8, 5000, proc=tmp_path) == 0
