"""App features, as ``features:enable NAME`` turns them on and off.

Each feature has a default; a row in ``app_features`` records only a choice the
user made.  ``preboot`` (zero-downtime web rollouts) is on by default: the
manager always starts new web dynos before it stops old ones unless the app
turned it off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from dynod.errors import NotFound
from dynod.state.db import Store


@dataclass(frozen=True)
class Feature:
    name: str
    description: str
    default: bool


KNOWN: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature(
            "preboot",
            "Start new web dynos and route to them before the old ones stop, "
            "so deploys, config changes and restarts lose no request.",
            True,
        ),
    )
}


def _known(name: str) -> Feature:
    try:
        return KNOWN[name]
    except KeyError:
        raise NotFound(
            f"Couldn't find feature {name!r}: known features are "
            f"{', '.join(sorted(KNOWN))}."
        ) from None


def states(store: Store, app_id: str) -> dict[str, bool]:
    """Every known feature of the app and whether it is on."""
    found = {f.name: f.default for f in KNOWN.values()}
    rows = store.db.execute(
        "SELECT name, enabled FROM app_features WHERE app_id = ?", (app_id,)
    ).fetchall()
    for name, enabled in rows:
        if name in found:
            found[name] = bool(enabled)
    return found


def enabled(store: Store, app_id: str, name: str) -> bool:
    return states(store, app_id)[_known(name).name]


def set_enabled(store: Store, app_id: str, name: str, on: bool) -> None:
    """Turn a feature on or off; :class:`NotFound` for an unknown name."""
    _known(name)
    with store.tx() as db:
        db.execute(
            "INSERT INTO app_features (app_id, name, enabled, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (app_id, name) DO UPDATE SET "
            "enabled = excluded.enabled, updated_at = excluded.updated_at",
            (app_id, name, int(on), time.time()),
        )
