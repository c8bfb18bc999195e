"""Custom domains of apps, and their automatic-certificate status.

Queries over :class:`~dynod.state.db.Store`'s connection; each public function
is one transaction.  A hostname belongs to at most one app (the table's UNIQUE
constraint), which is what lets the router route by ``Host`` unambiguously.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass

from dynod.errors import Conflict, NotFound
from dynod.state.db import Store

# Heroku's limit on custom domains per app.
MAX_DOMAINS = 1000


@dataclass(frozen=True)
class Domain:
    id: str
    app_id: str
    hostname: str
    acm_status: str | None
    acm_status_reason: str | None
    created_at: float
    updated_at: float


def _domain(row: sqlite3.Row) -> Domain:
    return Domain(
        row["id"],
        row["app_id"],
        row["hostname"],
        row["acm_status"],
        row["acm_status_reason"],
        row["created_at"],
        row["updated_at"],
    )


def add(store: Store, app_id: str, hostname: str) -> Domain:
    """Claim ``hostname`` for the app; :class:`Conflict` if any app has it."""
    now = time.time()
    with store.tx() as db:
        row = db.execute(
            "SELECT a.name FROM domains d JOIN apps a ON a.id = d.app_id "
            "WHERE d.hostname = ?",
            (hostname,),
        ).fetchone()
        if row is not None:
            raise Conflict(
                f"Domain {hostname} is already in use by app {row['name']}: remove "
                "it there first with `dynoctl domains:remove`."
            )
        (count,) = db.execute(
            "SELECT COUNT(*) FROM domains WHERE app_id = ?", (app_id,)
        ).fetchone()
        if count >= MAX_DOMAINS:
            raise Conflict(
                f"The app already has {count} custom domains, the most allowed; "
                f"remove one before adding {hostname}."
            )
        domain_id = str(uuid.uuid4())
        db.execute(
            "INSERT INTO domains(id, app_id, hostname, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (domain_id, app_id, hostname, now, now),
        )
    return get(store, app_id, domain_id)


def for_app(store: Store, app_id: str) -> list[Domain]:
    rows = store.db.execute(
        "SELECT * FROM domains WHERE app_id = ? ORDER BY hostname", (app_id,)
    ).fetchall()
    return [_domain(r) for r in rows]


def get(store: Store, app_id: str, ref: str) -> Domain:
    """The app's domain with id or hostname ``ref``."""
    row = store.db.execute(
        "SELECT * FROM domains WHERE app_id = ? AND (id = ? OR hostname = ?)",
        (app_id, ref, ref.lower()),
    ).fetchone()
    if row is None:
        raise NotFound(
            f"Couldn't find domain {ref} on this app: run `dynoctl domains` to "
            "list its domains."
        )
    return _domain(row)


def remove(store: Store, app_id: str, ref: str) -> Domain:
    domain = get(store, app_id, ref)
    with store.tx() as db:
        db.execute("DELETE FROM domains WHERE id = ?", (domain.id,))
    return domain


def hosts_by_app(store: Store) -> dict[str, list[str]]:
    """Every custom hostname, grouped by app id (for the route table)."""
    found: dict[str, list[str]] = defaultdict(list)
    for row in store.db.execute(
        "SELECT app_id, hostname FROM domains ORDER BY hostname"
    ):
        found[row["app_id"]].append(row["hostname"])
    return dict(found)


def set_acm_status(
    store: Store,
    app_id: str,
    status: str | None,
    reason: str | None = None,
    hostnames: list[str] | None = None,
) -> None:
    """Set the ACM status of the app's domains (all, or ``hostnames`` only)."""
    now = time.time()
    with store.tx() as db:
        if hostnames is None:
            db.execute(
                "UPDATE domains SET acm_status = ?, acm_status_reason = ?, "
                "updated_at = ? WHERE app_id = ?",
                (status, reason, now, app_id),
            )
            return
        for host in hostnames:
            db.execute(
                "UPDATE domains SET acm_status = ?, acm_status_reason = ?, "
                "updated_at = ? WHERE app_id = ? AND hostname = ?",
                (status, reason, now, app_id, host),
            )
