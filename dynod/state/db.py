"""The state database: apps, releases, builds and formation.

One connection, used only from the event loop's thread: SQLite in WAL mode
serialises writers anyway, and every statement here takes microseconds, so a
single writer keeps transactions simple and a crash at any instant leaves the
last committed state (each public method is one transaction).
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

from dynod.errors import Conflict, NotFound
from dynod.state.records import (
    App,
    AppSettings,
    Build,
    BuildStatus,
    FormationEntry,
    Release,
    ReleaseStatus,
)


class Store:
    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA synchronous=NORMAL")
        schema = resources.files("dynod.state").joinpath("schema.sql").read_text()
        self.db.executescript(schema)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def next_value(self, db: sqlite3.Connection, name: str) -> int:
        row = db.execute(
            "SELECT value FROM counters WHERE name = ?", (name,)
        ).fetchone()
        value = (row["value"] if row else 0) + 1
        db.execute(
            "INSERT INTO counters(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, value),
        )
        return int(value)

    # Apps

    def create_app(self, name: str) -> App:
        now = time.time()
        with self.tx() as db:
            if db.execute("SELECT 1 FROM apps WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"Name {name} is already taken: choose another name.")
            uid_index = self.next_value(db, "uid_index")
            app_id = str(uuid.uuid4())
            db.execute(
                "INSERT INTO apps(id, name, uid_index, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (app_id, name, uid_index, now, now),
            )
        return self.app(name)

    def apps(self) -> list[App]:
        rows = self.db.execute("SELECT * FROM apps ORDER BY name").fetchall()
        return [_app(r) for r in rows]

    def app(self, name: str) -> App:
        row = self.db.execute("SELECT * FROM apps WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(
                f"Couldn't find that app: {name}. Run `dynoctl apps` to list apps."
            )
        return _app(row)

    def delete_app(self, name: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM apps WHERE name = ?", (name,))

    def update_app(self, name: str, **values: Any) -> App:
        """Set columns of an app: config, settings, maintenance, current_release."""
        encoded: dict[str, Any] = {}
        for key, value in values.items():
            if key == "config":
                encoded[key] = json.dumps(value)
            elif key == "settings":
                encoded[key] = json.dumps(asdict(value))
            else:
                encoded[key] = value
        encoded["updated_at"] = time.time()
        assignments = ", ".join(f"{k} = ?" for k in encoded)
        with self.tx() as db:
            db.execute(
                f"UPDATE apps SET {assignments} WHERE name = ?",
                (*encoded.values(), name),
            )
        return self.app(name)

    # Releases

    def create_release(
        self,
        app: App,
        *,
        description: str,
        slug_digest: str | None,
        config: dict[str, str],
        process_types: dict[str, str],
        user: str,
        status: ReleaseStatus,
    ) -> Release:
        now = time.time()
        release_id = str(uuid.uuid4())
        with self.tx() as db:
            version = self.next_value(db, f"release:{app.id}")
            db.execute(
                "INSERT INTO releases(id, app_id, version, description, status, "
                "slug_digest, config, process_types, user, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    release_id,
                    app.id,
                    version,
                    description,
                    status.value,
                    slug_digest,
                    json.dumps(config),
                    json.dumps(process_types),
                    user,
                    now,
                    now,
                ),
            )
        return self.release(app, str(version))

    def set_release_status(self, release: Release, status: ReleaseStatus) -> Release:
        with self.tx() as db:
            db.execute(
                "UPDATE releases SET status = ?, updated_at = ? WHERE id = ?",
                (status.value, time.time(), release.id),
            )
        return self.release_by_id(release.id)

    def releases(self, app: App, limit: int | None = None) -> list[Release]:
        rows = self.db.execute(
            "SELECT * FROM releases WHERE app_id = ? ORDER BY version DESC LIMIT ?",
            (app.id, -1 if limit is None else limit),
        ).fetchall()
        return [_release(r) for r in reversed(rows)]

    def release(self, app: App, ref: str) -> Release:
        """A release by version (``7`` or ``v7``) or by id."""
        text = ref[1:] if ref[:1] in ("v", "V") else ref
        if text.isdigit():
            row = self.db.execute(
                "SELECT * FROM releases WHERE app_id = ? AND version = ?",
                (app.id, int(text)),
            ).fetchone()
        else:
            row = self.db.execute(
                "SELECT * FROM releases WHERE app_id = ? AND id = ?", (app.id, ref)
            ).fetchone()
        if row is None:
            raise NotFound(
                f"Couldn't find release {ref} of {app.name}. "
                "Run `dynoctl releases` to list releases."
            )
        return _release(row)

    def release_by_id(self, release_id: str) -> Release:
        row = self.db.execute(
            "SELECT * FROM releases WHERE id = ?", (release_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"Couldn't find release {release_id}.")
        return _release(row)

    def slugs_to_keep(self, per_app: int) -> set[str]:
        """Digests of the slugs of each app's newest ``per_app`` releases that
        have one, of each app's current release, and of builds still running."""
        rows = self.db.execute(
            """
            SELECT slug_digest FROM (
                SELECT r.slug_digest, r.version = a.current_release AS current,
                       ROW_NUMBER() OVER (
                           PARTITION BY r.app_id ORDER BY r.version DESC
                       ) AS newest
                FROM releases r JOIN apps a ON a.id = r.app_id
                WHERE r.slug_digest IS NOT NULL
            ) WHERE newest <= ? OR current
            UNION
            SELECT slug_digest FROM builds
            WHERE status = 'pending' AND slug_digest IS NOT NULL
            """,
            (per_app,),
        ).fetchall()
        return {r["slug_digest"] for r in rows}

    def slugs_of(self, releases: set[tuple[str, int]]) -> set[str]:
        """Digests of the slugs of these (app id, version) releases."""
        digests: set[str] = set()
        for app_id, version in releases:
            row = self.db.execute(
                "SELECT slug_digest FROM releases WHERE app_id = ? AND version = ?",
                (app_id, version),
            ).fetchone()
            if row is not None and row["slug_digest"] is not None:
                digests.add(row["slug_digest"])
        return digests

    # Builds

    def create_build(self, app: App, *, description: str, user: str) -> Build:
        now = time.time()
        build_id = str(uuid.uuid4())
        with self.tx() as db:
            db.execute(
                "INSERT INTO builds(id, app_id, status, description, user, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    build_id,
                    app.id,
                    BuildStatus.PENDING.value,
                    description,
                    user,
                    now,
                    now,
                ),
            )
        return self.build(app, build_id)

    def finish_build(
        self,
        build: Build,
        status: BuildStatus,
        *,
        buildpack: str | None = None,
        slug_digest: str | None = None,
        release_version: int | None = None,
    ) -> Build:
        with self.tx() as db:
            db.execute(
                "UPDATE builds SET status = ?, buildpack = ?, slug_digest = ?, "
                "release_version = ?, updated_at = ? WHERE id = ?",
                (
                    status.value,
                    buildpack,
                    slug_digest,
                    release_version,
                    time.time(),
                    build.id,
                ),
            )
        row = self.db.execute(
            "SELECT * FROM builds WHERE id = ?", (build.id,)
        ).fetchone()
        return _build(row)

    def builds(self, app: App) -> list[Build]:
        rows = self.db.execute(
            "SELECT * FROM builds WHERE app_id = ? ORDER BY created_at", (app.id,)
        ).fetchall()
        return [_build(r) for r in rows]

    def build(self, app: App, build_id: str) -> Build:
        row = self.db.execute(
            "SELECT * FROM builds WHERE app_id = ? AND id = ?", (app.id, build_id)
        ).fetchone()
        if row is None:
            raise NotFound(f"Couldn't find build {build_id} of {app.name}.")
        return _build(row)

    def fail_unfinished(self) -> int:
        """Mark builds and releases an earlier daemon left pending as failed.

        Returns how many rows changed.  A daemon that died mid-build or mid
        release phase never finished them, and nothing else will.
        """
        now = time.time()
        with self.tx() as db:
            builds = db.execute(
                "UPDATE builds SET status = ?, updated_at = ? WHERE status = ?",
                (BuildStatus.FAILED.value, now, BuildStatus.PENDING.value),
            ).rowcount
            releases = db.execute(
                "UPDATE releases SET status = ?, updated_at = ? WHERE status = ?",
                (ReleaseStatus.FAILED.value, now, ReleaseStatus.PENDING.value),
            ).rowcount
        return builds + releases

    # Formation

    def formation(self, app: App) -> list[FormationEntry]:
        rows = self.db.execute(
            "SELECT type, quantity, size FROM formation WHERE app_id = ? ORDER BY type",
            (app.id,),
        ).fetchall()
        return [FormationEntry(r["type"], r["quantity"], r["size"]) for r in rows]

    def set_formation(self, app: App, entries: list[FormationEntry]) -> None:
        with self.tx() as db:
            for e in entries:
                db.execute(
                    "INSERT INTO formation(app_id, type, quantity, size) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT(app_id, type) DO UPDATE SET "
                    "quantity = excluded.quantity, size = excluded.size",
                    (app.id, e.type, e.quantity, e.size),
                )


def _app(row: sqlite3.Row) -> App:
    return App(
        id=row["id"],
        name=row["name"],
        uid_index=row["uid_index"],
        config=json.loads(row["config"]),
        settings=AppSettings(**json.loads(row["settings"])),
        maintenance=bool(row["maintenance"]),
        current_release=row["current_release"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _release(row: sqlite3.Row) -> Release:
    return Release(
        id=row["id"],
        app_id=row["app_id"],
        version=row["version"],
        description=row["description"],
        status=ReleaseStatus(row["status"]),
        slug_digest=row["slug_digest"],
        config=json.loads(row["config"]),
        process_types=json.loads(row["process_types"]),
        user=row["user"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _build(row: sqlite3.Row) -> Build:
    return Build(
        id=row["id"],
        app_id=row["app_id"],
        status=BuildStatus(row["status"]),
        buildpack=row["buildpack"],
        slug_digest=row["slug_digest"],
        release_version=row["release_version"],
        description=row["description"],
        user=row["user"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
