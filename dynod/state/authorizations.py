"""API tokens: made, listed, revoked and checked.

A token is 32 random bytes in hex.  Only its SHA-256 is stored, so a copy of the
state database does not hand out access; checking a token is one indexed
lookup of its hash.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

from dynod.errors import NotFound
from dynod.state.db import Store


@dataclass(frozen=True)
class Authorization:
    id: str
    description: str
    created_at: float


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(store: Store, description: str) -> tuple[Authorization, str]:
    """A new authorization and its token (the only time the token is known)."""
    token = secrets.token_hex(32)
    auth = Authorization(str(uuid.uuid4()), description, time.time())
    with store.tx() as db:
        db.execute(
            "INSERT INTO authorizations(id, token_sha256, description, created_at) "
            "VALUES (?, ?, ?, ?)",
            (auth.id, _digest(token), auth.description, auth.created_at),
        )
    return auth, token


def list_all(store: Store) -> list[Authorization]:
    rows = store.db.execute(
        "SELECT id, description, created_at FROM authorizations ORDER BY created_at"
    ).fetchall()
    return [Authorization(r["id"], r["description"], r["created_at"]) for r in rows]


def revoke(store: Store, auth_id: str) -> Authorization:
    for auth in list_all(store):
        if auth.id == auth_id:
            with store.tx() as db:
                db.execute("DELETE FROM authorizations WHERE id = ?", (auth_id,))
            return auth
    raise NotFound(
        f"Couldn't find authorization {auth_id}. "
        "Run `dynoctl authorizations` to list them."
    )


def check(store: Store, token: str) -> bool:
    row = store.db.execute(
        "SELECT 1 FROM authorizations WHERE token_sha256 = ?", (_digest(token),)
    ).fetchone()
    return row is not None
