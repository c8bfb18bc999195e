"""Log drains in the state database: the rows and each drain's cursor."""

from __future__ import annotations

import sqlite3
import time
import uuid
from dataclasses import dataclass

from dynod.errors import Conflict, NotFound
from dynod.logs.store import Position
from dynod.state.db import Store

MAX_DRAINS_PER_APP = 5


@dataclass(frozen=True)
class Drain:
    id: str
    app_id: str
    url: str
    token: str
    cursor: Position
    created_at: float
    updated_at: float


def _drain(row: sqlite3.Row) -> Drain:
    return Drain(
        row["id"],
        row["app_id"],
        row["url"],
        row["token"],
        Position(row["cursor_seq"], row["cursor_offset"]),
        row["created_at"],
        row["updated_at"],
    )


class DrainRows:
    """Queries on the ``drains`` table, through the daemon's one connection."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def all(self) -> list[Drain]:
        rows = self.store.db.execute("SELECT * FROM drains ORDER BY created_at")
        return [_drain(r) for r in rows]

    def for_app(self, app_id: str) -> list[Drain]:
        rows = self.store.db.execute(
            "SELECT * FROM drains WHERE app_id = ? ORDER BY created_at", (app_id,)
        )
        return [_drain(r) for r in rows]

    def add(self, app_id: str, url: str, cursor: Position) -> Drain:
        """A new drain starting at ``cursor``; raises Conflict past the limit."""
        now = time.time()
        drain = Drain(
            str(uuid.uuid4()), app_id, url, f"d.{uuid.uuid4()}", cursor, now, now
        )
        with self.store.tx() as db:
            count = db.execute(
                "SELECT count(*) FROM drains WHERE app_id = ?", (app_id,)
            ).fetchone()[0]
            if count >= MAX_DRAINS_PER_APP:
                raise Conflict(
                    f"The app already has {count} drains, the most it may have: "
                    "remove one with drains:remove first."
                )
            if db.execute(
                "SELECT 1 FROM drains WHERE app_id = ? AND url = ?", (app_id, url)
            ).fetchone():
                raise Conflict(f"The app already drains to {url}.")
            db.execute(
                "INSERT INTO drains(id, app_id, url, token, cursor_seq, cursor_offset,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    drain.id,
                    app_id,
                    url,
                    drain.token,
                    cursor.seq,
                    cursor.offset,
                    now,
                    now,
                ),
            )
        return drain

    def find(self, app_id: str, ref: str) -> Drain:
        """A drain of the app by id, URL or token; raises NotFound."""
        row = self.store.db.execute(
            "SELECT * FROM drains"
            " WHERE app_id = ? AND (id = ? OR url = ? OR token = ?)",
            (app_id, ref, ref, ref),
        ).fetchone()
        if row is None:
            raise NotFound(
                f"No drain {ref!r} on this app: list them with `dynoctl drains`."
            )
        return _drain(row)

    def remove(self, drain_id: str) -> None:
        with self.store.tx() as db:
            db.execute("DELETE FROM drains WHERE id = ?", (drain_id,))

    def save_cursor(self, drain_id: str, cursor: Position) -> None:
        self.store.db.execute(
            "UPDATE drains SET cursor_seq = ?, cursor_offset = ?, updated_at = ?"
            " WHERE id = ?",
            (cursor.seq, cursor.offset, time.time(), drain_id),
        )
