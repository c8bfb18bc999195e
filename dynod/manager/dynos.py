"""The manager's record of one dyno, and its on-disk copy for adoption."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dynod.manager.states import DynoState
from dynod.runtime.agent import DynoHandle
from dynod.runtime.spec import DynoKind


@dataclass
class Dyno:
    dyno_id: str
    app_id: str
    app_name: str
    name: str
    type: str
    kind: DynoKind
    release: int
    command: str
    size: str
    port: int | None
    state: DynoState
    state_since: float
    created_at: float
    handle: DynoHandle | None = field(default=None, compare=False)
    # The manager asked this dyno to stop: its exit is not a crash.
    stopping: bool = False
    # A newer dyno of the same name is taking over; this one is on its way out.
    replaced: bool = False
    # Out of the route table: requests no longer reach it.
    draining: bool = False
    # A starting web dyno that listens on $PORT and awaits its health check.
    listening: bool = False
    # The status its last health check got; None when none came back.
    last_check: int | None = None
    # Left to a paced rollout (worker_surge), which replaces it in its turn.
    rolling: bool = False
    # One-offs attached to a client: their output goes there, not to the logs.
    attached: bool = False
    # An attached one-off's client has connected (until then an exited one is
    # kept, so a command faster than the client still hands over its output).
    client_attached: bool = False
    # Crashed and waiting: wall-clock time of the next start attempt.
    restart_at: float | None = None
    # One-offs end at this wall-clock time (their time-to-live).
    expires_at: float | None = None

    @property
    def is_web(self) -> bool:
        return self.kind is DynoKind.FORMATION and self.type == "web"


_RECORD_FIELDS = (
    "dyno_id",
    "app_id",
    "app_name",
    "name",
    "type",
    "release",
    "command",
    "size",
    "port",
    "created_at",
    "attached",
    "expires_at",
)


class DynoRecords:
    """One small JSON file per running dyno, so a new daemon can adopt it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def save(self, dyno: Dyno) -> None:
        data = {k: v for k, v in asdict(dyno).items() if k in _RECORD_FIELDS}
        data["kind"] = dyno.kind.value
        tmp = self.directory / f".{dyno.dyno_id}.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.directory / f"{dyno.dyno_id}.json")

    def load(self, dyno_id: str) -> dict[str, object] | None:
        try:
            data: dict[str, object] = json.loads(
                (self.directory / f"{dyno_id}.json").read_text()
            )
        except (FileNotFoundError, ValueError):
            return None
        return data

    def remove(self, dyno_id: str) -> None:
        (self.directory / f"{dyno_id}.json").unlink(missing_ok=True)

    def ids(self) -> list[str]:
        return [p.stem for p in self.directory.glob("*.json")]
