"""Stacks: the immutable, versioned base root filesystem under every dyno.

A stack's ``rootfs`` is the lowest layer of a dyno's overlay root
(``lowerdir=<slug_dir>:<rootfs>``).  The default stack, ``host-<release>``, is
made from the host itself in a few seconds and with no network:

* ``/usr`` is snapshotted with hard links (``cp -al``) when the stacks directory
  is on the same filesystem, else copied.  Package managers replace files by
  renaming new ones into place, so the links keep the old content and the
  snapshot stays as it was when taken;
* ``/etc`` is copied through a filter that keeps what programs need (passwd,
  group, certificates, resolver and loader config, alternatives, ...) and drops
  every secret: anything the host hides from other users (shadow, sudoers, SSH
  host keys, TLS private keys) and known credential files;
* merged-usr links (``bin -> usr/bin``, ...) and the empty mount points and
  scratch directories a dyno needs.

Layout: ``<stacks_dir>/<name>/<version>/rootfs`` with ``stack.json`` beside it.
A stack is built in ``<stacks_dir>/.build-*`` and renamed into place, so a crash
leaves no half stack, and builders serialise on ``<stacks_dir>/.lock`` (flock),
so daemons sharing a stacks directory never build the same stack twice.

Immutability is a contract, not a permission bit: the version directory is made
read-only, but root ignores that, and ``/usr`` shares inodes with the host.  A
stack is therefore only ever mounted as a read-only overlay lower layer and
never modified in place; a new host state makes a new version.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from dynod.errors import RuntimeFailure

log = structlog.get_logger("dynod.runtime.stack")

HOST = Path("/")
# Programs every dyno relies on: the shell that runs the command, the init, the
# language most buildpacks need, and the basic tools of a shell session.
REQUIRED = (
    "usr/bin/bash",
    "usr/bin/tini",
    "usr/bin/python3",
    "usr/bin/ls",
    "usr/bin/ps",
)
MERGED_USR = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# (path, mode) of the directories a dyno mounts on or writes to.
EMPTY_DIRS = (
    ("proc", 0o555),
    ("sys", 0o555),
    ("dev", 0o755),
    ("run", 0o755),
    ("tmp", 0o1777),
    ("var", 0o755),
    ("var/tmp", 0o1777),
    ("app", 0o755),
    ("home", 0o755),
    ("root", 0o700),
    ("mnt", 0o755),
    ("opt", 0o755),
)
# /etc entries dropped whatever their mode: host identity, credentials that are
# world-readable on some distros, and dynod's own configuration.
ETC_DENY = {
    "machine-id",
    "dynod",
    "ssh",
    "ssl/private",
    "pki/tls/private",
    "sudoers",
    "sudoers.d",
    "shadow",
    "shadow-",
    "gshadow",
    "gshadow-",
    "security/opasswd",
    "krb5.keytab",
    "ipsec.secrets",
    "ppp/chap-secrets",
    "ppp/pap-secrets",
    "NetworkManager/system-connections",
    "wpa_supplicant",
    "wireguard",
    "openvpn",
    "letsencrypt",
    "apt/auth.conf",
    "apt/auth.conf.d",
    "docker",
    "credstore",
    "credstore.encrypted",
}


@dataclass(frozen=True)
class Stack:
    """A built stack; ``rootfs`` is ready to be an overlay lower layer."""

    name: str
    version: str
    rootfs: Path


def ensure_default_stack(
    stacks_dir: Path, progress: Callable[[str], None] | None = None
) -> Stack:
    """Return the host's default stack, building it first if it is missing.

    Safe to call from several processes at once: one builds, the others wait
    for it.  Raises :class:`RuntimeFailure` when the host lacks a program every
    dyno needs (bash, tini, python3, coreutils, procps) or the copy fails.
    """
    say = progress or (lambda _msg: None)
    name, version = _default_name(), _host_version()
    final = stacks_dir / name / version
    if (final / "rootfs").is_dir():
        return Stack(name, version, final / "rootfs")

    stacks_dir.mkdir(parents=True, exist_ok=True)
    with _locked(stacks_dir / ".lock"):
        # Another process may have finished it while this one waited.
        if (final / "rootfs").is_dir():
            return Stack(name, version, final / "rootfs")

        # Left-overs of builders that crashed (the lock proves none is running).
        for stale in stacks_dir.glob(".build-*"):
            _remove_tree(stale)

        started = time.monotonic()
        build = Path(tempfile.mkdtemp(prefix=".build-", dir=stacks_dir))
        try:
            _build(build / "rootfs", stacks_dir, say)
            meta = {"name": name, "version": version, "built_at": time.time()}
            (build / "stack.json").write_text(json.dumps(meta) + "\n")
            build.chmod(0o555)
            final.parent.mkdir(exist_ok=True)
            os.rename(build, final)
        except BaseException:
            _remove_tree(build)
            raise
        took = time.monotonic() - started
        say(f"Built stack {name} {version} in {took:.1f} s")
        log.info("stack_built", name=name, version=version, seconds=round(took, 2))
    return Stack(name, version, final / "rootfs")


def list_stacks(stacks_dir: Path) -> list[Stack]:
    """Every complete stack in ``stacks_dir``, by name then version."""
    return [
        Stack(rootfs.parent.parent.name, rootfs.parent.name, rootfs)
        for rootfs in sorted(stacks_dir.glob("[!.]*/*/rootfs"))
        if rootfs.is_dir()
    ]


def _build(rootfs: Path, stacks_dir: Path, say: Callable[[str], None]) -> None:
    # /usr, and /bin & co. on hosts that have not merged them into /usr.
    rootfs.mkdir()
    same_fs = os.stat(HOST / "usr").st_dev == os.stat(stacks_dir).st_dev
    say("Snapshotting /usr" + (" (hard links)" if same_fs else " (copying)"))
    _snapshot(HOST / "usr", rootfs / "usr", same_fs)
    for top in MERGED_USR:
        host = HOST / top
        if host.is_symlink():
            (rootfs / top).symlink_to(os.readlink(host))
        elif host.is_dir():
            _snapshot(host, rootfs / top, same_fs)

    # /etc without secrets, and a resolver config that works from a netns.
    say("Copying /etc without secrets")
    shutil.copytree(HOST / "etc", rootfs / "etc", symlinks=True, ignore=_etc_filter)
    _write_resolv_conf(rootfs / "etc" / "resolv.conf")

    # Mount points and scratch directories (mkdir's mode is masked by umask).
    for rel, mode in EMPTY_DIRS:
        d = rootfs / rel
        d.mkdir(exist_ok=True)
        d.chmod(mode)

    # Refuse a stack no dyno could start in.
    missing = [p for p in REQUIRED if not (rootfs / p).exists()]
    if missing:
        raise RuntimeFailure(
            f"The host lacks {', '.join('/' + p for p in missing)}, which every dyno "
            "needs; install bash, tini, python3, coreutils and procps, then retry."
        )


def _snapshot(src: Path, dst: Path, hard_links: bool) -> None:
    argv = ["cp", "-al" if hard_links else "-a", str(src), str(dst)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeFailure(
            f"Could not snapshot {src} into the stack ({' '.join(argv)}): "
            f"{done.stderr.strip()}. Check free space and inodes in {dst.parent}."
        )


def _etc_filter(directory: str, names: list[str]) -> set[str]:
    """copytree ignore hook: the entries of ``directory`` to leave out."""
    rel_dir = os.path.relpath(directory, HOST / "etc")
    dropped: set[str] = set()
    for name in names:
        rel = os.path.normpath(os.path.join(rel_dir, name))
        st = os.lstat(os.path.join(directory, name))
        hidden = not stat.S_ISLNK(st.st_mode) and not st.st_mode & stat.S_IROTH
        special = not (
            stat.S_ISREG(st.st_mode)
            or stat.S_ISDIR(st.st_mode)
            or stat.S_ISLNK(st.st_mode)
        )
        # What the host keeps from other users is a secret to every app.
        if rel in ETC_DENY or hidden or special:
            dropped.add(name)
    return dropped


def _write_resolv_conf(target: Path) -> None:
    """Name servers a dyno can reach: the host's upstream ones, not a local stub.

    A dyno has its own network namespace, so 127.0.0.53 (systemd-resolved's
    stub) is the dyno itself; resolved keeps the upstream list elsewhere.
    """
    text = ""
    for candidate in (
        HOST / "etc/resolv.conf",
        HOST / "run/systemd/resolve/resolv.conf",
    ):
        with contextlib.suppress(OSError):
            text = candidate.read_text()
            servers = [
                line.split()[1]
                for line in text.splitlines()
                if line.startswith("nameserver") and len(line.split()) > 1
            ]
            if servers and not all(s.startswith("127.") for s in servers):
                break
    target.unlink(missing_ok=True)
    target.write_text(text)
    target.chmod(0o644)


def _default_name() -> str:
    """``host-12`` on Debian 12; ``host-ubuntu-24.04`` elsewhere."""
    release: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in (HOST / "etc/os-release").read_text().splitlines():
            key, _, value = line.partition("=")
            release[key] = value.strip().strip('"')
    distro, version = release.get("ID", "linux"), release.get("VERSION_ID", "0")
    return f"host-{version}" if distro == "debian" else f"host-{distro}-{version}"


def _host_version() -> str:
    """Date the host's packages last changed, and a short hash of their list."""
    for db in (HOST / "var/lib/dpkg/status", HOST / "var/lib/rpm/rpmdb.sqlite"):
        if db.exists():
            digest = hashlib.sha256(db.read_bytes()).hexdigest()[:10]
            date = datetime.fromtimestamp(db.stat().st_mtime, UTC).strftime("%Y%m%d")
            return f"{date}-{digest}"
    raise RuntimeFailure(
        "Found no package database (dpkg or rpm) to version the host stack by; "
        "dynod supports Debian, Ubuntu and RHEL-like hosts."
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _remove_tree(path: Path) -> None:
    """Delete a (possibly read-only) build or stack directory."""
    with contextlib.suppress(FileNotFoundError):
        path.chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)
