"""JSON shapes of API resources, following the Heroku Platform API v3."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dynod.config import Config
from dynod.manager.dynos import Dyno
from dynod.state.records import App, Build, FormationEntry, Release


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def app_view(
    app: App, config: Config, released_at: float | None = None
) -> dict[str, Any]:
    return {
        "id": app.id,
        "name": app.name,
        "created_at": iso(app.created_at),
        "updated_at": iso(app.updated_at),
        "released_at": iso(released_at),
        "web_url": f"http://{app.name}.{config.router_domain}/",
        "current_release": app.current_release,
        "maintenance": app.maintenance,
        "stack": {"name": "host"},
    }


def release_view(app: App, release: Release) -> dict[str, Any]:
    return {
        "id": release.id,
        "version": release.version,
        "description": release.description,
        "status": release.status.value,
        "current": release.version == app.current_release,
        "slug": {"id": release.slug_digest} if release.slug_digest else None,
        "user": {"email": release.user},
        "created_at": iso(release.created_at),
        "updated_at": iso(release.updated_at),
        "output_stream_url": f"/apps/{app.name}/releases/{release.version}/output",
    }


def build_view(app: App, build: Build) -> dict[str, Any]:
    return {
        "id": build.id,
        "status": build.status.value,
        "created_at": iso(build.created_at),
        "updated_at": iso(build.updated_at),
        "output_stream_url": f"/apps/{app.name}/builds/{build.id}/output",
        "release": (
            {"version": build.release_version}
            if build.release_version is not None
            else None
        ),
        "slug": {"id": build.slug_digest} if build.slug_digest else None,
        "buildpack": build.buildpack,
        "description": build.description,
        "user": {"email": build.user},
    }


def formation_view(entry: FormationEntry, command: str | None) -> dict[str, Any]:
    return {
        "type": entry.type,
        "quantity": entry.quantity,
        "size": entry.size,
        "command": command,
    }


def dyno_view(app: App, dyno: Dyno, memory_bytes: int | None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": dyno.dyno_id,
        "name": dyno.name,
        "type": dyno.type,
        "state": dyno.state.value,
        "command": dyno.command,
        "size": dyno.size,
        "release": {"version": dyno.release},
        "host": "local",
        "created_at": iso(dyno.created_at),
        "updated_at": iso(dyno.state_since),
        "memory_bytes": memory_bytes,
        # Crashed dynos: when the next start attempt is due.
        "restart_at": iso(dyno.restart_at),
        # One-offs: when their time-to-live ends.
        "expires_at": iso(dyno.expires_at),
    }
    if dyno.attached:
        view["attach_url"] = f"/apps/{app.name}/dynos/{dyno.name}/attach"
    return view
