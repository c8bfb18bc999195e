"""The rlimits a dyno gets, from its plan."""

from __future__ import annotations

import resource

from dynod.runtime.plan import LaunchPlan
from dynod.runtime.privileges import NPROC_DYNOS, limits


def plan(pids: int) -> LaunchPlan:
    return LaunchPlan(
        dyno_id="d1",
        app="a",
        name="web.1",
        build=False,
        argv=["true"],
        env={},
        uid=200001,
        gid=200001,
        stack_dir="/s",
        slug_dir=None,
        binds=[],
        ephemeral_bytes=1,
        tty=False,
        stdin=False,
        cgroup_dirs=[],
        address=None,
        gateway=None,
        veth=None,
        bridge=None,
        pids=pids,
    )


def test_nproc_is_an_app_wide_backstop_above_one_dyno() -> None:
    got = limits(plan(512))
    assert got[resource.RLIMIT_NPROC] == 512 * NPROC_DYNOS


def test_no_core_dumps_and_no_realtime() -> None:
    got = limits(plan(256))
    assert got[resource.RLIMIT_CORE] == 0
    assert got[resource.RLIMIT_RTPRIO] == 0
    assert got[resource.RLIMIT_NOFILE] == 10000
