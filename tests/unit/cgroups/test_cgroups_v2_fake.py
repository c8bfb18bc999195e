"""The v2 backend against a fake cgroup2 tree that behaves like the kernel.

The fake fills new directories with the control files the kernel would show,
merges ``+ctrl``/``-ctrl`` writes to ``cgroup.subtree_control``, enforces the
"no internal processes" rule and refuses to rmdir a populated cgroup.
"""

from __future__ import annotations

import errno
import signal
import subprocess
from pathlib import Path

import pytest

from dynod.errors import CgroupError
from dynod.runtime.cgroups import (
    CGROUP2_SUPER_MAGIC,
    CgroupFs,
    CgroupMode,
    detect_mode,
    open_cgroups,
)
from dynod.runtime.cgroups_v2 import CgroupsV2
from dynod.runtime.spec import MB, SIZES, Size

ALL_CONTROLLERS = "cpuset cpu io memory hugetlb pids rdma misc"


class FakeCgroup2(CgroupFs):
    """A cgroup2 filesystem emulated in an ordinary directory."""

    def __init__(self, root: Path, controllers: str = ALL_CONTROLLERS) -> None:
        self.root = root
        self.kills: list[Path] = []
        for name, text in {
            "cgroup.controllers": controllers,
            "cgroup.subtree_control": "",
            "cgroup.procs": "",
        }.items():
            (root / name).write_text(text + "\n" if text else "")

    def mkdir(self, path: Path) -> None:
        if path.exists():
            return
        path.mkdir()
        enabled = (path.parent / "cgroup.subtree_control").read_text().split()
        files = {
            "cgroup.controllers": " ".join(enabled),
            "cgroup.subtree_control": "",
            "cgroup.procs": "",
            "cgroup.events": "populated 0\nfrozen 0",
            "cgroup.freeze": "0",
            "cgroup.kill": "",
            "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0",
        }
        if "memory" in enabled:
            files |= {
                "memory.current": "0",
                "memory.max": "max",
                "memory.swap.max": "max",
                "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0",
            }
        if "cpu" in enabled:
            files |= {"cpu.weight": "100", "cpu.max": "max 100000"}
        if "pids" in enabled:
            files |= {"pids.max": "max", "pids.current": "0"}
        for name, text in files.items():
            (path / name).write_text(text + "\n" if text else "")

    def read(self, path: Path) -> str:
        # The kernel derives a cgroup's controllers from its parent's delegation.
        if path.name == "cgroup.controllers" and path.parent != self.root:
            return (path.parent.parent / "cgroup.subtree_control").read_text()
        return super().read(path)

    def rmdir(self, path: Path) -> None:
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, "No such file", str(path))
        if any(p.is_dir() for p in path.iterdir()) or self._procs(path):
            raise OSError(errno.EBUSY, "Device or resource busy", str(path))
        for p in path.iterdir():
            p.unlink()
        path.rmdir()

    def write(self, path: Path, value: str) -> None:
        cg, name = path.parent, path.name
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, "No such file", str(path))
        if name == "cgroup.subtree_control":
            self._subtree(cg, value)
        elif name == "cgroup.procs":
            with path.open("a") as f:
                f.write(f"{int(value)}\n")
        elif name == "cgroup.kill":
            self.kills.append(cg)
            (cg / "cgroup.procs").write_text("")
        elif name == "cgroup.freeze":
            (cg / "cgroup.events").write_text(f"populated 0\nfrozen {int(value)}\n")
            path.write_text(value + "\n")
        else:
            path.write_text(value + "\n")

    def _subtree(self, cg: Path, value: str) -> None:
        available = self.read(cg / "cgroup.controllers").split()
        enabled = (cg / "cgroup.subtree_control").read_text().split()
        for token in value.split():
            op, ctrl = token[0], token[1:]
            if op not in "+-" or ctrl not in available:
                raise OSError(errno.ENOENT, "No such controller", ctrl)
            if cg != self.root and self._procs(cg):
                raise OSError(errno.EBUSY, "Device or resource busy", str(cg))
            enabled = [c for c in enabled if c != ctrl] + ([ctrl] if op == "+" else [])
        (cg / "cgroup.subtree_control").write_text(" ".join(enabled) + "\n")

    @staticmethod
    def _procs(cg: Path) -> list[str]:
        return (cg / "cgroup.procs").read_text().split()


@pytest.fixture
def fake(tmp_path: Path) -> FakeCgroup2:
    return FakeCgroup2(tmp_path)


@pytest.fixture
def cg(fake: FakeCgroup2, instance: str) -> CgroupsV2:
    opened = open_cgroups(instance, fake.root, mode=CgroupMode.V2, fs=fake)
    assert isinstance(opened, CgroupsV2)
    return opened


def test_detect_mode_reads_the_filesystem_type(tmp_path: Path) -> None:
    assert detect_mode(tmp_path, lambda _: CGROUP2_SUPER_MAGIC) is CgroupMode.V2
    assert detect_mode(tmp_path, lambda _: 0x27E0EB) is CgroupMode.V1
    # A plain directory (ext4 or tmpfs here) is not a cgroup2 mount.
    assert detect_mode(tmp_path) is CgroupMode.V1


def test_create_delegates_controllers_down_every_ancestor(
    cg: CgroupsV2, fake: FakeCgroup2, instance: str
) -> None:
    cg.create("web1", SIZES["standard-1x"])

    for parent in (fake.root, fake.root / instance, fake.root / instance / "dynos"):
        enabled = (parent / "cgroup.subtree_control").read_text().split()
        assert sorted(enabled) == ["cpu", "memory", "pids"], parent
    dyno = fake.root / instance / "dynos" / "web1"
    assert (dyno / "cgroup.subtree_control").read_text().split() == []
    assert cg.paths("web1") == [dyno]


def test_create_writes_the_size_limits(cg: CgroupsV2) -> None:
    cg.create("web1", SIZES["standard-2x"])
    cg.create("big", Size("huge", 4096 * MB, 1000, 500, cpu_quota=2.5))

    def read(dyno: str, name: str) -> str:
        return (cg.paths(dyno)[0] / name).read_text().strip()

    assert read("web1", "memory.max") == str(1024 * MB)
    assert read("web1", "memory.swap.max") == "0"
    assert read("web1", "cpu.weight") == "200"
    assert read("web1", "cpu.max") == "max 100000"
    assert read("web1", "pids.max") == "512"
    # 500 shares would be 50000; the kernel accepts at most 10000.
    assert read("big", "cpu.weight") == "10000"
    assert read("big", "cpu.max") == "250000 100000"


def test_create_again_is_idempotent_and_applies_a_new_size(cg: CgroupsV2) -> None:
    cg.create("web1", Size("q", 256 * MB, 64, 1, cpu_quota=1.0))
    cg.create("web1", SIZES["standard-1x"])

    assert cg.memory("web1") == (0, 512 * MB)
    assert (cg.paths("web1")[0] / "cpu.max").read_text().strip() == "max 100000"
    assert cg.list() == ["web1"]


def test_missing_controller_is_reported(tmp_path: Path, instance: str) -> None:
    fake = FakeCgroup2(tmp_path, controllers="cpu memory io")
    cg = open_cgroups(instance, tmp_path, mode=CgroupMode.V2, fs=fake)

    with pytest.raises(CgroupError, match="pids"):
        cg.create("web1", SIZES["eco"])


def test_daemon_must_leave_a_delegated_root_before_create(
    tmp_path: Path, instance: str
) -> None:
    # A delegated service cgroup (not the hierarchy root) holding the daemon.
    fake = FakeCgroup2(tmp_path)
    service = tmp_path / "dynod.service"
    fake.write(tmp_path / "cgroup.subtree_control", "+memory +cpu +pids")
    fake.mkdir(service)
    fake.write(service / "cgroup.procs", "4242")
    cg = open_cgroups(instance, service, mode=CgroupMode.V2, fs=fake)

    with pytest.raises(CgroupError, match="leaf"):
        cg.create("web1", SIZES["eco"])

    cg.enter_daemon_leaf(4242)
    (service / "cgroup.procs").write_text("")
    cg.create("web1", SIZES["eco"])
    assert (service / instance / "daemon" / "cgroup.procs").read_text().split() == [
        "4242"
    ]
    assert (service / instance / "dynos" / "web1" / "pids.max").exists()


def test_readings_parse_the_kernel_formats(cg: CgroupsV2) -> None:
    cg.create("web1", SIZES["standard-1x"])
    d = cg.paths("web1")[0]
    (d / "memory.current").write_text("123456\n")
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 4\noom_kill 3\n")
    (d / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    (d / "pids.current").write_text("7\n")

    assert cg.memory("web1") == (123456, 512 * MB)
    assert cg.oom_kills("web1") == 3
    assert cg.cpu_seconds("web1") == 2.5
    assert cg.pids_current("web1") == 7

    (d / "memory.max").write_text("max\n")
    assert cg.memory("web1")[1] == 2**63 - 1


def test_reading_a_missing_dyno_raises(cg: CgroupsV2) -> None:
    with pytest.raises(CgroupError, match="nope"):
        cg.memory("nope")


def test_attach_procs_and_sigkill_through_cgroup_kill(
    cg: CgroupsV2, fake: FakeCgroup2
) -> None:
    cg.create("web1", SIZES["eco"])
    cg.attach("web1", 111)
    cg.attach("web1", 99)
    assert cg.procs("web1") == [99, 111]

    cg.kill_all("web1", signal.SIGKILL)
    assert fake.kills == cg.paths("web1")
    assert cg.procs("web1") == []


def test_other_signals_freeze_signal_each_and_thaw(cg: CgroupsV2) -> None:
    cg.create("web1", SIZES["eco"])
    child = subprocess.Popen(["sleep", "30"])
    try:
        cg.attach("web1", child.pid)
        cg.kill_all("web1", signal.SIGTERM)
        assert child.wait(timeout=5) == -signal.SIGTERM
        freeze = (cg.paths("web1")[0] / "cgroup.freeze").read_text().strip()
        assert freeze == "0"
    finally:
        child.kill()
        child.wait()
    # Gone dynos have nothing to signal.
    cg.kill_all("gone", signal.SIGTERM)


def test_remove_and_destroy_leave_nothing(
    cg: CgroupsV2, fake: FakeCgroup2, instance: str
) -> None:
    cg.create("web1", SIZES["eco"])
    cg.create("web2", SIZES["eco"])
    cg.remove("web1")
    cg.remove("web1")  # missing is fine
    assert cg.list() == ["web2"]

    with pytest.raises(CgroupError, match="web2"):
        cg.destroy()
    cg.remove("web2")
    cg.destroy()
    assert not (fake.root / instance).exists()
    assert [p for p in fake.root.iterdir() if p.is_dir()] == []


def test_remove_of_a_busy_cgroup_gives_up(cg: CgroupsV2) -> None:
    cg.create("web1", SIZES["eco"])
    cg.attach("web1", 4242)
    cg.remove_timeout = 0.05

    with pytest.raises(CgroupError, match=r"still busy.*4242"):
        cg.remove("web1")
    assert cg.list() == ["web1"]
