"""TLS certificates of apps (uploaded or from ACME) and the apps with ACM on.

Queries over :class:`~dynod.state.db.Store`'s connection; each public function
is one transaction.  Private keys live here in PEM: the state dir is 0700.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum

from dynod.errors import NotFound
from dynod.state.db import Store


class CertKind(StrEnum):
    UPLOADED = "uploaded"
    ACME = "acme"


@dataclass(frozen=True)
class CertRecord:
    id: str
    app_id: str
    name: str
    kind: CertKind
    chain: str
    key: str = ""
    domains: tuple[str, ...] = ()
    not_before: float = 0.0
    not_after: float = 0.0
    warned_days: int | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


def _cert(row: sqlite3.Row) -> CertRecord:
    return CertRecord(
        id=row["id"],
        app_id=row["app_id"],
        name=row["name"],
        kind=CertKind(row["kind"]),
        chain=row["chain"],
        key=row["key"],
        domains=tuple(json.loads(row["domains"])),
        not_before=row["not_before"],
        not_after=row["not_after"],
        warned_days=row["warned_days"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def add(
    store: Store,
    app_id: str,
    kind: CertKind,
    chain: str,
    key: str,
    domains: tuple[str, ...],
    not_before: float,
    not_after: float,
) -> CertRecord:
    """Store a certificate under a new name (``<adjective>-<n>`` style ids)."""
    now = time.time()
    cert_id = str(uuid.uuid4())
    with store.tx() as db:
        n = store.next_value(db, "sni_endpoint")
        name = f"{'acm' if kind is CertKind.ACME else 'sni'}-{n}"
        db.execute(
            "INSERT INTO certificates(id, app_id, name, kind, chain, key, domains, "
            "not_before, not_after, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                cert_id,
                app_id,
                name,
                kind.value,
                chain,
                key,
                json.dumps(list(domains)),
                not_before,
                not_after,
                now,
                now,
            ),
        )
    return get(store, app_id, cert_id)


def for_app(
    store: Store, app_id: str, kind: CertKind | None = None
) -> list[CertRecord]:
    rows = store.db.execute(
        "SELECT * FROM certificates WHERE app_id = ? ORDER BY created_at", (app_id,)
    ).fetchall()
    found = [_cert(r) for r in rows]
    return [c for c in found if kind is None or c.kind is kind]


def every(store: Store) -> list[CertRecord]:
    rows = store.db.execute("SELECT * FROM certificates ORDER BY created_at")
    return [_cert(r) for r in rows.fetchall()]


def get(store: Store, app_id: str, ref: str) -> CertRecord:
    """The app's certificate with id or name ``ref``."""
    row = store.db.execute(
        "SELECT * FROM certificates WHERE app_id = ? AND (id = ? OR name = ?)",
        (app_id, ref, ref),
    ).fetchone()
    if row is None:
        raise NotFound(
            f"Couldn't find certificate {ref} on this app: run `dynoctl certs` to "
            "list its certificates."
        )
    return _cert(row)


def remove(store: Store, cert_id: str) -> None:
    with store.tx() as db:
        db.execute("DELETE FROM certificates WHERE id = ?", (cert_id,))


def set_warned(store: Store, cert_id: str, days: int) -> None:
    with store.tx() as db:
        db.execute(
            "UPDATE certificates SET warned_days = ? WHERE id = ?", (days, cert_id)
        )


def acm_enabled(store: Store, app_id: str) -> bool:
    row = store.db.execute(
        "SELECT 1 FROM acm_apps WHERE app_id = ?", (app_id,)
    ).fetchone()
    return row is not None


def acm_apps(store: Store) -> list[str]:
    """Ids of the apps with automatic certificates on."""
    return [r["app_id"] for r in store.db.execute("SELECT app_id FROM acm_apps")]


def set_acm(store: Store, app_id: str, enabled: bool) -> None:
    with store.tx() as db:
        if enabled:
            db.execute(
                "INSERT OR IGNORE INTO acm_apps(app_id, enabled_at) VALUES (?, ?)",
                (app_id, time.time()),
            )
        else:
            db.execute("DELETE FROM acm_apps WHERE app_id = ?", (app_id,))
