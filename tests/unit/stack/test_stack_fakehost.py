"""Stack building against a small fake host tree (no root needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dynod.errors import RuntimeFailure
from dynod.runtime import stack as stack_mod
from dynod.runtime.stack import ensure_default_stack, list_stacks

PROGRAMS = ("bash", "tini", "python3", "ls", "ps")


def put(path: Path, text: str = "", mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "host"
    for program in PROGRAMS:
        put(root / "usr/bin" / program, "#!/bin/sh\n", 0o755)
    (root / "bin").symlink_to("usr/bin")
    put(root / "etc/os-release", 'ID=debian\nVERSION_ID="12"\n')
    put(root / "var/lib/dpkg/status", "Package: bash\n")
    put(root / "etc/passwd", "root:x:0:0::/root:/bin/bash\n")
    put(root / "etc/shadow", "root:$y$secret:1::::::\n", 0o640)
    put(root / "etc/machine-id", "0123456789abcdef\n", 0o444)
    put(root / "etc/ssh/ssh_host_ed25519_key", "PRIVATE\n", 0o600)
    put(root / "etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAA\n")
    put(root / "etc/ssl/certs/ca.pem", "CERT\n")
    put(root / "etc/ssl/private/host.key", "KEY\n", 0o600)
    (root / "etc/ssl/private").chmod(0o700)
    put(root / "etc/ppp/chap-secrets", "user * pass *\n")
    put(root / "etc/dynod/dynod.toml", "instance = 'x'\n")
    put(root / "etc/resolv.conf", "nameserver 127.0.0.53\n")
    put(root / "run/systemd/resolve/resolv.conf", "nameserver 192.0.2.53\n")
    (root / "etc/localtime").symlink_to("/usr/share/zoneinfo/UTC")
    monkeypatch.setattr(stack_mod, "HOST", root)
    return root


def test_etc_keeps_what_programs_need_and_drops_secrets(
    host: Path, tmp_path: Path
) -> None:
    stack = ensure_default_stack(tmp_path / "stacks")
    etc = stack.rootfs / "etc"

    kept = sorted(str(p.relative_to(etc)) for p in etc.rglob("*"))
    assert kept == [
        "localtime",
        "os-release",
        "passwd",
        "ppp",
        "resolv.conf",
        "ssl",
        "ssl/certs",
        "ssl/certs/ca.pem",
    ]
    assert (etc / "localtime").readlink() == Path("/usr/share/zoneinfo/UTC")
    # The stub resolver would be the dyno itself: the upstream list is used.
    assert (etc / "resolv.conf").read_text() == "nameserver 192.0.2.53\n"
    assert stack.name == "host-12"
    assert (stack.rootfs / "bin").readlink() == Path("usr/bin")
    # Same filesystem: /usr is hard-linked, not copied.
    assert os.path.samefile(stack.rootfs / "usr/bin/tini", host / "usr/bin/tini")


def test_a_host_without_tini_gets_no_stack(host: Path, tmp_path: Path) -> None:
    (host / "usr/bin/tini").unlink()
    stacks = tmp_path / "stacks"

    with pytest.raises(RuntimeFailure, match="/usr/bin/tini"):
        ensure_default_stack(stacks)
    assert sorted(p.name for p in stacks.iterdir()) == [".lock"]


def test_a_crash_mid_build_leaves_no_half_stack(
    host: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stacks = tmp_path / "stacks"

    def crash(_target: Path) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(stack_mod, "_write_resolv_conf", crash)
        with pytest.raises(KeyboardInterrupt):
            ensure_default_stack(stacks)
    assert list_stacks(stacks) == []
    assert sorted(p.name for p in stacks.iterdir()) == [".lock"]

    # A builder killed outright leaves its temp dir; the next build clears it.
    (stacks / ".build-dead" / "rootfs").mkdir(parents=True)
    stack = ensure_default_stack(stacks)
    assert sorted(p.name for p in stacks.iterdir()) == [".lock", "host-12"]
    assert list_stacks(stacks) == [stack]


def test_new_packages_make_a_new_version(host: Path, tmp_path: Path) -> None:
    stacks = tmp_path / "stacks"
    first = ensure_default_stack(stacks)
    put(host / "var/lib/dpkg/status", "Package: bash\n\nPackage: tini\n")
    second = ensure_default_stack(stacks)

    assert first.version != second.version
    assert list_stacks(stacks) == sorted([first, second], key=lambda s: s.rootfs)
    # Stacks are read-only once built.
    assert not os.stat(first.rootfs.parent).st_mode & 0o222
    for stale in stacks.glob("host-12/*"):
        stack_mod._remove_tree(stale)
