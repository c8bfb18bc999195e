"""Shared test plumbing: per-run names, the root requirement, and the leak check.

Every kernel object a test makes carries an instance name from
:func:`new_instance` (``dt`` + 5 hex digits).  At the end of the session the leak
check looks for anything still carrying such a name (cgroups, links, mounts,
network namespaces, firewall chains, processes) and fails the run if it finds
one, so a test that does not clean up cannot pass unnoticed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import Daemon, running_daemon
from tests.support.names import ISSUED, TEST_INSTANCE_RE, new_instance


def _leaks() -> list[str]:
    found: list[str] = []
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            if TEST_INSTANCE_RE.fullmatch(d):
                found.append(f"cgroup {root}/{d}")
        # Test cgroups sit directly under each controller root.
        if root.count("/") >= 5:
            dirs.clear()
    links = subprocess.run(
        ["ip", "-o", "link"], capture_output=True, text=True, check=False
    ).stdout
    found += [f"link {m}" for m in TEST_INSTANCE_RE.findall(links)]
    netns = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=False
    ).stdout
    found += [f"netns {m}" for m in TEST_INSTANCE_RE.findall(netns)]
    mounts = Path("/proc/self/mountinfo").read_text()
    found += [f"mount {m}" for m in TEST_INSTANCE_RE.findall(mounts)]
    for tool, table in (
        ("iptables", "filter"),
        ("iptables", "nat"),
        ("ip6tables", "filter"),
    ):
        rules = subprocess.run(
            [tool, "-t", table, "-S"], capture_output=True, text=True, check=False
        ).stdout
        # Chains carry the instance name upper-cased.
        found += [
            f"{tool} {table} {m.lower()}"
            for m in TEST_INSTANCE_RE.findall(rules.lower())
        ]
    ps = subprocess.run(
        ["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=False
    ).stdout
    for line in ps.splitlines():
        if TEST_INSTANCE_RE.search(line) and str(os.getpid()) not in line.split()[:1]:
            found.append(f"process {line.strip()}")
    return sorted(set(found))


@pytest.fixture(scope="session", autouse=True)
def leak_check() -> object:
    before = set(_leaks()) if os.geteuid() == 0 else set()
    yield
    if os.geteuid() != 0:
        return
    left = [
        x for x in _leaks() if x not in before and any(name in x for name in ISSUED)
    ]
    assert not left, "Tests left kernel objects behind:\n  " + "\n  ".join(left)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root and the real kernel")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def instance() -> str:
    """A fresh instance name (``dt`` + 5 hex digits) for one test."""
    return new_instance()


@pytest.fixture(scope="session")
def shared_stack_dir() -> Iterator[Path]:
    """One stack for every daemon of the session: it takes seconds to make."""
    path = Path(tempfile.mkdtemp(prefix="dynod-stacks-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def dynod(shared_stack_dir: Path) -> Iterator[Daemon]:
    """A real ``dynod serve`` of its own for the test module."""
    with running_daemon(shared_stack_dir) as daemon:
        yield daemon
