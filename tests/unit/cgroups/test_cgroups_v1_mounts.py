"""The v1 backend's layout logic: mountinfo parsing and per-hierarchy paths."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from dynod.errors import CgroupError
from dynod.runtime.cgroups import CgroupFs, CgroupMode, open_cgroups
from dynod.runtime.cgroups_v1 import CgroupsV1, parse_mountinfo
from dynod.runtime.spec import MB, Size

# Debian-style hybrid: cpu and cpuacct co-mounted, a name=systemd hierarchy,
# a cgroup2 mount, and a mount point with an escaped space.
MOUNTINFO = """\
25 31 0:22 / /sys rw,nosuid - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/free\\040zer rw shared:9 - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def test_parse_finds_each_controller_and_the_cgroup2_mount() -> None:
    mounts = parse_mountinfo(MOUNTINFO)

    base = Path("/sys/fs/cgroup")
    assert mounts.controllers == {
        "cpu": base / "cpu,cpuacct",
        "cpuacct": base / "cpu,cpuacct",
        "memory": base / "memory",
        "freezer": base / "free zer",
        "pids": base / "pids",
    }
    assert mounts.unified == base / "unified"


def test_comounted_hierarchies_get_one_directory(instance: str) -> None:
    cg = CgroupsV1(instance, parse_mountinfo(MOUNTINFO), CgroupFs())

    names = [str(p.relative_to("/sys/fs/cgroup")) for p in cg.paths("web1")]
    assert names == [
        f"{h}/{instance}/dynos/web1"
        for h in ("memory", "cpu,cpuacct", "pids", "free zer", "unified")
    ]


def test_missing_controller_is_reported(tmp_path: Path, instance: str) -> None:
    text = "\n".join(line for line in MOUNTINFO.splitlines() if "pids" not in line)
    (tmp_path / "mountinfo").write_text(text)

    with pytest.raises(CgroupError, match="pids"):
        open_cgroups(instance, mountinfo=tmp_path / "mountinfo", mode=CgroupMode.V1)


class FakeCgroup1(CgroupFs):
    """v1 memory semantics: limit <= memsw limit is enforced on every write."""

    def mkdir(self, path: Path) -> None:
        if path.exists():
            return
        path.mkdir()
        unlimited = str(2**63 - 4096)
        for name, text in {
            "memory.limit_in_bytes": unlimited,
            "memory.memsw.limit_in_bytes": unlimited,
            "memory.oom_control": "oom_kill_disable 1\nunder_oom 0\noom_kill 0",
        }.items():
            (path / name).write_text(text + "\n")

    def write(self, path: Path, value: str) -> None:
        limit = path.parent / "memory.limit_in_bytes"
        memsw = path.parent / "memory.memsw.limit_in_bytes"
        if path == limit and int(value) > int(memsw.read_text()):
            raise OSError(errno.EINVAL, "Invalid argument", str(path))
        if path == memsw and int(value) < int(limit.read_text()):
            raise OSError(errno.EINVAL, "Invalid argument", str(path))
        path.write_text(value + "\n")


def test_memory_limits_move_in_either_direction(tmp_path: Path, instance: str) -> None:
    lines = [
        f"3{i} 1 0:1 / {tmp_path}/{c} rw - cgroup cgroup rw,{c}"
        for i, c in enumerate(("memory", "cpu", "cpuacct", "pids", "freezer"))
    ]
    mounts = parse_mountinfo("\n".join(lines))
    for mount_point in mounts.controllers.values():
        mount_point.mkdir()
    cg = CgroupsV1(instance, mounts, FakeCgroup1())
    mem = tmp_path / "memory" / instance / "dynos" / "web1"

    for mb in (256, 64, 1024):
        cg.create("web1", Size("t", mb * MB, 16, 3, cpu_quota=0.25))
        assert (mem / "memory.limit_in_bytes").read_text().strip() == str(mb * MB)
        assert (mem / "memory.memsw.limit_in_bytes").read_text().strip() == str(mb * MB)

    # The OOM killer is switched back on even when the parent disabled it.
    assert (mem / "memory.oom_control").read_text().strip() == "0"
    cpu = tmp_path / "cpu" / instance / "dynos" / "web1"
    assert (cpu / "cpu.shares").read_text().strip() == "3072"
    assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "25000"
    assert (tmp_path / "pids" / instance / "dynos" / "web1" / "pids.max").exists()
