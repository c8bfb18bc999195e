"""A daemon stopped (SIGTERM, as systemd stops it) or killed (SIGKILL) leaves its
dynos running; the next one adopts them.

Meanwhile the router keeps serving and every dyno keeps running; a new
``dynod serve`` on the same state adopts them (same dyno ids), and they are
still managed: logs flow, a crash restarts, scale and stop work.
"""

from __future__ import annotations

import shutil
import signal
import time

import pytest

from tests.support.daemon import EXAMPLE_APP, Daemon
from tests.support.load import LoadLoop

pytestmark = pytest.mark.integration


def _wait(check: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    pytest.fail(f"{what} did not happen within {timeout} s")


@pytest.mark.parametrize(
    "sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"]
)
def test_a_stopped_dynod_keeps_its_dynos_and_the_next_adopts_them(
    dynod: Daemon, sig: signal.Signals
) -> None:
    app = f"adopt-{sig.name.lower()}"

    def _ps(d: Daemon) -> dict[str, dict[str, object]]:
        return {x["name"]: x for x in d.ctl_json("ps", "-a", app)}

    dynod.ctl("apps:create", app)
    dynod.ctl("deploy", "-a", app, str(EXAMPLE_APP))
    dynod.ctl("ps:scale", "-a", app, "web=2", "worker=1")
    _wait(
        lambda: (
            len(_ps(dynod)) == 3
            and all(x["state"] == "up" for x in _ps(dynod).values())
        ),
        "web=2 worker=1 up",
    )
    before = {n: x["id"] for n, x in _ps(dynod).items()}

    # SIGKILL: no clean-up of any kind; SIGTERM: dynod's own orderly stop.  The
    # router must keep serving meanwhile.
    assert dynod.proc is not None
    with LoadLoop(dynod.http_port, f"{app}.localhost", threads=2) as load:
        dynod.proc.send_signal(sig)
        dynod.proc.wait(30)
        dynod.proc = None
        time.sleep(1.0)
        dynod.start()
        _wait(lambda: len(_ps(dynod)) == 3, "adoption")
        time.sleep(0.5)
    result = load.stop()
    assert result.requests > 50
    assert not result.failures, "\n".join(result.failures[:10])

    # The same dynos, not new ones.
    after = {n: x["id"] for n, x in _ps(dynod).items()}
    assert after == before
    assert all(x["state"] == "up" for x in _ps(dynod).values())

    # Logs still flow from an adopted dyno's pipes.
    marker = f"adopted-{time.monotonic_ns()}"
    status, _ = dynod.get(app, f"/{marker}")
    assert status == 404
    _wait(
        lambda: marker in dynod.ctl("logs", "-a", app, "-s", "app").stdout,
        "an adopted dyno's log line",
    )

    # A crash of an adopted dyno is seen and restarted.
    worker_id = after["worker.1"]
    dynod.ctl("ps:stop", "-a", app, "worker.1")
    _wait(
        lambda: _ps(dynod).get("worker.1", {}).get("id") not in (None, worker_id),
        "worker.1 replaced",
    )

    # Scale and stop act on adopted dynos.
    dynod.ctl("ps:scale", "-a", app, "web=1", "worker=0")
    _wait(lambda: sorted(_ps(dynod)) == ["web.1"], "scale down")
    assert _ps(dynod)["web.1"]["id"] == before["web.1"]
    dynod.wait_for(app, "/", "Hello from web.1")


def test_after_a_host_reboot_the_formation_starts_again(dynod: Daemon) -> None:
    app = "rebooted"
    dynod.ctl("apps:create", app)
    try:
        dynod.ctl("deploy", "-a", app, str(EXAMPLE_APP))
        dynod.ctl("config:set", "-a", app, "GREETING=still-here")
        dynod.ctl("ps:scale", "-a", app, "web=2", "worker=1")

        def ps() -> dict[str, dict[str, object]]:
            return {x["name"]: x for x in dynod.ctl_json("ps", "-a", app)}

        def all_up() -> bool:
            dynos = ps()
            return len(dynos) == 3 and all(x["state"] == "up" for x in dynos.values())

        _wait(all_up, "web=2 worker=1 up")
        before = {x["id"] for x in ps().values()}

        # What a reboot leaves: no process, no cgroup, no netns, link, rule or
        # run file of the instance, only the state directory (its dyno
        # records now name dynos that no longer exist).
        assert dynod.proc is not None
        dynod.proc.send_signal(signal.SIGKILL)
        dynod.proc.wait(10)
        dynod.proc = None
        dynod.destroy()
        shutil.rmtree(dynod.run_dir)
        assert list((dynod.state_dir / "dynos").iterdir())

        dynod.start()
        _wait(all_up, "the formation after the reboot")
        assert not {x["id"] for x in ps().values()} & before
        assert "still-here" in dynod.wait_for(app, "/", "Hello from web.")
        # The records of the dynos the reboot ended are gone.
        records = {p.stem for p in (dynod.state_dir / "dynos").iterdir()}
        assert not records & before
    finally:
        dynod.ctl("apps:destroy", app, "--confirm", app, check=False)
