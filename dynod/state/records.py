"""Typed rows of the state database."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class ReleaseStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class BuildStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class AppSettings:
    """Per-app runtime settings (``apps:settings``)."""

    # Seconds a web dyno has to listen on $PORT (and pass its health check).
    boot_timeout: float = 60.0
    # Seconds between SIGTERM and SIGKILL.
    stop_timeout: float = 30.0
    # A path a new web dyno must answer with 2xx or 3xx, through the router,
    # before it serves; "" for none (listening on $PORT is enough).
    health_path: str = ""
    # How many dynos of each non-web type a rollout replaces at a time, each
    # new one started before its old one stops; 0 replaces all at once.
    worker_surge: int = 0


@dataclass(frozen=True)
class App:
    id: str
    name: str
    uid_index: int
    config: dict[str, str] = field(hash=False)
    settings: AppSettings
    maintenance: bool
    current_release: int | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Release:
    id: str
    app_id: str
    version: int
    description: str
    status: ReleaseStatus
    slug_digest: str | None
    config: dict[str, str] = field(hash=False)
    process_types: dict[str, str] = field(hash=False)
    user: str
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Build:
    id: str
    app_id: str
    status: BuildStatus
    buildpack: str | None
    slug_digest: str | None
    release_version: int | None
    description: str
    user: str
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class FormationEntry:
    type: str
    quantity: int
    size: str
