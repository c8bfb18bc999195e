"""Dyno states and the transitions between them, as data.

A dyno is ``starting`` from the moment its process runs until it is ready: a web
dyno when it listens on ``$PORT``, any other dyno at once.  It is ``up`` while it
runs.  When its process exits the dyno is ``crashed`` if the manager did not ask
for the exit (any status, 0 included, as on Heroku) and ``down`` if it did
(scale down, restart, stop, a new release).  A crashed formation dyno is started
again after a back-off; a down dyno is gone for good.  One-off dynos end
``down`` whatever their status: they are never restarted.

=============  ==================================================
from           to
=============  ==================================================
(new)          starting
starting       up, crashed (exit or boot timeout), down (stopped)
up             crashed (exit), down (stopped)
crashed        starting (restart after back-off), down (removed)
=============  ==================================================

Every change is logged in the app's stream as Heroku does:
``dynod[web.1]: State changed from starting to up``.
"""

from __future__ import annotations

import enum


class DynoState(enum.StrEnum):
    STARTING = "starting"
    UP = "up"
    CRASHED = "crashed"
    DOWN = "down"


TRANSITIONS: dict[DynoState | None, frozenset[DynoState]] = {
    None: frozenset({DynoState.STARTING}),
    DynoState.STARTING: frozenset({DynoState.UP, DynoState.CRASHED, DynoState.DOWN}),
    DynoState.UP: frozenset({DynoState.CRASHED, DynoState.DOWN}),
    DynoState.CRASHED: frozenset({DynoState.STARTING, DynoState.DOWN}),
    DynoState.DOWN: frozenset(),
}

# Crash back-off: the first crash restarts at once, then 1 s, 2 s, 4 s, ...
# doubling up to 20 minutes.  A new release or a manual restart resets it.
BACKOFF_CAP = 20 * 60.0


# A dyno that ran this long before it crashed starts a fresh back-off count, so
# a crash a week after the last one restarts at once.
BACKOFF_RESET = 10 * 60.0

# Daily cycling: each dyno is replaced 24 h plus a random 0-216 min after it
# started, through the same no-downtime path as a restart.
CYCLE_BASE = 24 * 3600.0
CYCLE_JITTER = 216 * 60.0

# One-off dynos end after their time-to-live: at most (and by default) 24 h.
ONE_OFF_TTL_MAX = 24 * 3600.0


def backoff_delay(crashes: int) -> float:
    """Seconds to wait before restarting a dyno that has crashed ``crashes`` times."""
    if crashes <= 1:
        return 0.0
    return min(BACKOFF_CAP, 2.0 ** (crashes - 2))


def check_transition(old: DynoState | None, new: DynoState) -> None:
    if new not in TRANSITIONS[old]:
        raise ValueError(f"A dyno cannot go from {old} to {new}.")
