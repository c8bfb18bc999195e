"""The systemd unit: valid, and set up so that restarting dynod leaves dynos be."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[3] / "systemd" / "dynod.service"


def _settings() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            found[key.strip()] = value.strip()
    return found


def test_stopping_the_service_signals_the_daemon_only() -> None:
    settings = _settings()
    # KillMode=process: stop and restart signal the main process alone, so
    # the spawner, the router and every dyno keep running for the next daemon.
    assert settings["KillMode"] == "process"
    assert settings["Delegate"] == "yes"
    assert settings["Restart"] == "always"
    assert settings["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not here"
)
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    # As installed: ExecStart points at a dynod that exists.
    dynod = Path(sys.executable).with_name("dynod")
    unit = tmp_path / "dynod.service"
    unit.write_text(UNIT.read_text().replace("/opt/dynod/venv/bin/dynod", str(dynod)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "dynod.service" not in done.stderr, done.stderr
