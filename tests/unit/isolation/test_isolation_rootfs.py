"""The /proc masks, against a fake mount call on a fake proc tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynod.runtime import rootfs
from dynod.runtime import syscalls as sc


def test_masks_what_exists_and_freezes_the_global_knobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    for name in ("kcore", "keys", "sysrq-trigger"):
        (proc / name).write_text("")
    for name in ("acpi", "sys", "irq"):
        (proc / name).mkdir()
    mounts: list[tuple[str, str, str | None, int]] = []
    monkeypatch.setattr(
        sc,
        "mount",
        lambda src, dst, fstype, flags=0, data="": mounts.append(
            (src, dst.removeprefix(str(proc) + "/"), fstype, flags)
        ),
    )

    rootfs.mask_proc(str(proc))

    ro = sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID
    assert ("/dev/null", "kcore", None, sc.MS_BIND) in mounts
    assert ("none", "kcore", None, ro | sc.MS_NOEXEC) in mounts
    assert ("masked", "acpi", "tmpfs", rootfs._READONLY) in mounts
    for name in ("sys", "irq", "sysrq-trigger"):
        assert ("none", name, None, ro | sc.MS_NODEV | sc.MS_NOEXEC) in mounts
    # Nothing is mounted for what this kernel does not have.
    assert not [m for m in mounts if m[1] in ("timer_list", "bus", "fs")]
