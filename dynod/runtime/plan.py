"""What the spawner needs to launch one dyno, as plain JSON.

A :class:`LaunchPlan` is a :class:`~dynod.runtime.spec.DynoSpec` plus what the
agent decided for it (address, veth name, cgroup directories), flattened so it
can cross the spawner's socket.  The launcher reads nothing else.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from dynod.runtime.spec import DynoKind, DynoSpec

# Search path used when the spec's environment has none: the stack's own.
STACK_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class Bind:
    source: str
    target: str
    readonly: bool


@dataclass(frozen=True)
class LaunchPlan:
    dyno_id: str
    app: str
    name: str
    build: bool
    argv: list[str]
    env: dict[str, str]
    uid: int
    gid: int
    stack_dir: str
    slug_dir: str | None
    binds: list[Bind]
    ephemeral_bytes: int
    tty: bool
    stdin: bool
    # Every cgroup directory the dyno joins before it unshares its namespaces.
    cgroup_dirs: list[str]
    # "10.217.0.5/16", the bridge's address, the host end's name and the
    # bridge's name; all None for a dyno without network.
    address: str | None
    gateway: str | None
    veth: str | None
    bridge: str | None
    # The size's process limit (the app-wide RLIMIT_NPROC derives from it).
    pids: int = 256
    seccomp: bool = True

    @classmethod
    def from_spec(
        cls,
        spec: DynoSpec,
        cgroup_dirs: list[str],
        address: str | None = None,
        gateway: str | None = None,
        veth: str | None = None,
        bridge: str | None = None,
    ) -> LaunchPlan:
        env = dict(spec.env)
        env.setdefault("PATH", STACK_PATH)
        return cls(
            dyno_id=spec.dyno_id,
            app=spec.app,
            name=spec.name,
            build=spec.kind is DynoKind.BUILD,
            argv=list(spec.argv),
            env=env,
            uid=spec.uid,
            gid=spec.gid,
            stack_dir=str(spec.stack_dir),
            slug_dir=str(spec.slug_dir) if spec.slug_dir else None,
            binds=[Bind(str(b.source), b.target, b.readonly) for b in spec.binds],
            ephemeral_bytes=spec.ephemeral_bytes,
            tty=spec.tty,
            stdin=spec.stdin,
            cgroup_dirs=cgroup_dirs,
            address=address,
            gateway=gateway,
            veth=veth,
            bridge=bridge,
            pids=spec.size.pids,
            seccomp=spec.seccomp,
        )

    @property
    def attached(self) -> bool:
        """True when the dyno's terminal goes to a caller instead of the logs."""
        return self.tty or self.stdin

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LaunchPlan:
        fields = dict(data)
        fields["binds"] = [Bind(**b) for b in data["binds"]]
        return cls(**fields)

    def dumps(self) -> str:
        return json.dumps(self.to_json())
