"""The dyno's PID 1 gives up root for good, just before it execs tini.

Order matters, and each step is one the next cannot undo::

    rlimits         lowered while still allowed to set them
    bounding set    emptied (PR_CAPBSET_DROP needs CAP_SETPCAP: before setuid)
    groups, gid, uid   the app's own host uid; root's capabilities go with it
    capabilities    inheritable and ambient cleared too (setuid leaves those)
    no_new_privs    setuid bits and file capabilities stop meaning anything
    seccomp         the filter of :mod:`dynod.runtime.seccomp` (needs no_new_privs)

Which uid: every app gets a dedicated host uid (``Config.app_uid``: a base per
instance + the app's index, never shared between apps), not a user namespace.
Inside a user namespace the dyno would be "root" with a full capability set over
every object its namespaces own, and that is exactly the surface behind most
container escapes of recent years (netfilter, overlayfs and mount bugs reachable
only with namespaced CAP_SYS_ADMIN/CAP_NET_ADMIN).  A plain unprivileged uid, no
capabilities anywhere and ``unshare(CLONE_NEWUSER)`` blocked by seccomp leave
that surface closed.  A dedicated uid also lets the slug be owned by the app
without remapping the stack, and makes RLIMIT_NPROC (counted per uid across the
host) a per-app backstop.  The price: the dyno's uid is a real host uid, so the
host's mode bits apply to whatever it can see, which is only the stack (no
secrets, see :mod:`dynod.runtime.stack`), its slug and its own mounts.
"""

from __future__ import annotations

import os
import resource

from dynod.runtime import seccomp
from dynod.runtime import syscalls as sc
from dynod.runtime.plan import LaunchPlan

NOFILE = 10000
# RLIMIT_NPROC counts every process of the uid on the host, so of every dyno of
# the app; the pids cgroup is the per-dyno limit and this the app-wide backstop
# that holds even where the pids controller is missing.
NPROC_DYNOS = 32
# 8 MiB, the kernel's own default since 5.16: enough for io buffers and
# crypto libraries, too little to pin the host's memory.
MEMLOCK = 8 * 1024 * 1024


def limits(plan: LaunchPlan) -> dict[int, int]:
    """The rlimits a dyno gets (soft = hard), by RLIMIT_* number."""
    return {
        resource.RLIMIT_NOFILE: NOFILE,
        resource.RLIMIT_NPROC: plan.pids * NPROC_DYNOS,
        # A crashing app must not write a core of its memory anywhere.
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_MEMLOCK: MEMLOCK,
        # No real-time scheduling or raised priority to starve neighbours.
        resource.RLIMIT_RTPRIO: 0,
        resource.RLIMIT_NICE: 0,
    }


def drop(plan: LaunchPlan) -> None:
    """Become the app's unprivileged uid with no way back.

    Raises :class:`OSError` (the kernel's errno) when a step is refused; the
    launcher turns that into a failed start rather than run a dyno half-dropped.
    """
    # Limits only go down, and only root may set them to anything above the
    # current hard limit; keep whichever is lower.
    for which, value in limits(plan).items():
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))

    # No capability can come back through exec once the bounding set is empty.
    sc.drop_bounding_set(sc.cap_last_cap())

    # The app's uid; the change from 0 clears effective and permitted sets.
    os.setgroups([])
    os.setresgid(plan.gid, plan.gid, plan.gid)
    os.setresuid(plan.uid, plan.uid, plan.uid)
    sc.clear_capabilities()

    # Nothing gained through exec (setuid, file caps), then the filter.
    sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    if plan.seccomp:
        seccomp.install()
