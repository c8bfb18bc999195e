"""Memory quotas: R14 over the size's quota, R15 and a kill at twice of it.

A dyno's cgroup gets a hard memory limit of :data:`HARD_LIMIT_FACTOR` times its
size's quota, so the kernel itself stops a runaway dyno there.  Between quota
and hard limit the dyno keeps running and the manager logs R14 on each check,
as Heroku does.  R15 is never guessed from usage figures alone: it is logged
when the cgroup's own ``oom_kill`` counter has grown (the kernel's OOM killer
acted inside the dyno), and the dyno is then killed whole: the process the
OOM killer picked may not have been the dyno's main one.

The check reads two cgroup files per dyno every :data:`CHECK_INTERVAL`
seconds: cheap enough for hundreds of dynos.
"""

from __future__ import annotations

from dataclasses import dataclass

from dynod.runtime.spec import MB

HARD_LIMIT_FACTOR = 2
# Seconds between two looks at every dyno's memory.
CHECK_INTERVAL = 10.0


def hard_limit(quota_bytes: int) -> int:
    """The cgroup limit for a dyno whose size allows ``quota_bytes``."""
    return HARD_LIMIT_FACTOR * quota_bytes


def usage_line(usage_bytes: int, quota_bytes: int) -> str:
    """Heroku's ``Process running mem=1028MB(103.3%)``."""
    percent = 100.0 * usage_bytes / quota_bytes if quota_bytes else 0.0
    return f"Process running mem={usage_bytes // MB}MB({percent:.1f}%)"


@dataclass(frozen=True)
class Verdict:
    """What one check of one dyno found: lines to log, and whether to kill it."""

    lines: tuple[str, ...] = ()
    kill: bool = False


def judge(
    usage_bytes: int, quota_bytes: int, oom_kills: int, oom_kills_seen: int
) -> Verdict:
    """Decide on one reading of a dyno's cgroup.

    ``oom_kills`` is the cgroup's counter now and ``oom_kills_seen`` its value
    at the previous check (0 at start).
    """
    # R15: the kernel's OOM killer acted at the hard limit.  Usage alone is
    # no proof: page cache fills up to the limit and is reclaimed there.
    if oom_kills > oom_kills_seen:
        return Verdict(
            (
                usage_line(usage_bytes, quota_bytes),
                "Error R15 (Memory quota vastly exceeded)",
                "Stopping process with SIGKILL",
            ),
            kill=True,
        )

    # R14: over quota, still running.
    if usage_bytes > quota_bytes:
        return Verdict(
            (
                usage_line(usage_bytes, quota_bytes),
                "Error R14 (Memory quota exceeded)",
            )
        )
    return Verdict()
