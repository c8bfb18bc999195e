"""The default stack built from this very host, by two builders at once."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynod.runtime.stack import Stack, _remove_tree, ensure_default_stack, list_stacks

pytestmark = pytest.mark.integration

# Each builder prints its stack as JSON and whether it built it.
BUILDER = """
import json, sys, time
from pathlib import Path
from dynod.runtime.stack import ensure_default_stack
said = []
t = time.monotonic()
s = ensure_default_stack(Path(sys.argv[1]), said.append)
print(json.dumps([s.name, s.version, str(s.rootfs), said, time.monotonic() - t]))
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Stack]]:
    stacks_dir = tmp_path_factory.mktemp("stacks")
    try:
        # Two daemons sharing a stacks directory start at the same moment.
        builders = [
            subprocess.Popen(
                [sys.executable, "-c", BUILDER, str(stacks_dir)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [b.communicate(timeout=120)[0] for b in builders]
        results = [json.loads(out.splitlines()[-1]) for out in outputs]
        assert all(b.returncode == 0 for b in builders)

        # Both got the same stack; exactly one of them built it.
        assert results[0][:3] == results[1][:3]
        built_by = [r for r in results if any("Built" in m for m in r[3])]
        assert len(built_by) == 1
        print(f"\ndefault stack build: {built_by[0][4]:.2f} s", file=sys.stderr)

        name, version, rootfs, _, _ = results[0]
        yield stacks_dir, Stack(name, version, Path(rootfs))
    finally:
        for child in stacks_dir.iterdir():
            _remove_tree(child)


def test_it_is_complete_and_listed(built: tuple[Path, Stack]) -> None:
    stacks_dir, stack = built

    assert stack.name == "host-12"
    assert stack.rootfs == stacks_dir / stack.name / stack.version / "rootfs"
    for program in ("bash", "tini", "python3", "ls", "ps"):
        assert (stack.rootfs / "usr/bin" / program).exists(), program
    assert (stack.rootfs / "bin").readlink() == Path("usr/bin")
    assert stat.S_IMODE((stack.rootfs / "tmp").stat().st_mode) == 0o1777
    assert (stack.rootfs / "etc/passwd").read_text() == Path("/etc/passwd").read_text()
    assert (stack.rootfs / "etc/ssl/certs").is_dir()
    meta = json.loads((stack.rootfs.parent / "stack.json").read_text())
    assert meta["version"] == stack.version
    assert list_stacks(stacks_dir) == [stack]
    # No builder left a temporary directory behind.
    assert [p.name for p in stacks_dir.iterdir() if p.name.startswith(".build")] == []


def test_it_carries_no_secrets(built: tuple[Path, Stack]) -> None:
    etc = built[1].rootfs / "etc"

    for secret in ("shadow", "gshadow", "sudoers", "machine-id", "ssl/private"):
        assert not (etc / secret).exists(), secret
    assert list(etc.rglob("ssh_host_*")) == []
    # Nothing the host hides from other users made it in.
    hidden = [
        p
        for p in etc.rglob("*")
        if not p.is_symlink() and not p.stat().st_mode & stat.S_IROTH
    ]
    assert hidden == []


def test_a_second_call_is_instant(built: tuple[Path, Stack]) -> None:
    stacks_dir, stack = built
    started = time.monotonic()

    assert ensure_default_stack(stacks_dir) == stack
    assert time.monotonic() - started < 0.5


def test_bash_and_python_run_from_it(built: tuple[Path, Stack]) -> None:
    rootfs = built[1].rootfs
    env = {"PATH": "/usr/bin:/bin"}
    script = (
        "echo $BASH_VERSION; python3 -c 'import ssl, json; print(42)'; ls --version"
    )

    done = subprocess.run(
        ["/usr/sbin/chroot", str(rootfs), "/bin/bash", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("5.")
    assert lines[1] == "42"
    assert "coreutils" in lines[2]
    assert os.path.samefile(rootfs / "usr/bin/tini", "/usr/bin/tini")
