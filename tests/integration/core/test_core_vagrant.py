"""The trial cluster's Vagrantfile stays valid (vagrant itself cannot boot VMs here)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support.daemon import REPO

pytestmark = pytest.mark.integration


def test_vagrantfile_validates() -> None:
    result = subprocess.run(
        ["vagrant", "validate", "--ignore-provider"],
        cwd=REPO / "vagrant",
        # Without this vagrant asks HashiCorp's servers for a newer version.
        env={**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated successfully" in result.stdout
