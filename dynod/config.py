"""dynod's settings: embedded defaults, ``/etc/dynod/dynod.toml``, then flags.

Every name a daemon gives a kernel object (cgroups, bridge, veths, firewall
chains) derives from :attr:`Config.instance`, and every path from ``state_dir``
and ``run_dir``, so several daemons can run side by side on one host.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
import zlib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dynod.errors import UserInputError
from dynod.runtime.spec import DEFAULT_SIZE, MB, SIZES, Size

DEFAULT_CONFIG_FILE = Path("/etc/dynod/dynod.toml")
_INSTANCE_RE = re.compile(r"[a-z][a-z0-9]{0,7}")
DEFAULT_SUBNET = ipaddress.IPv4Network("10.217.0.0/16")
DEFAULT_UID_BASE = 200000
UID_BLOCK = 65536


@dataclass(frozen=True)
class Config:
    state_dir: Path = Path("/var/lib/dynod")
    run_dir: Path = Path("/run/dynod")
    http_port: int = 80
    https_port: int = 443
    # Extra TCP listener for the JSON API ("127.0.0.1:5000"), or None.
    api_listen: str | None = None
    dyno_subnet: ipaddress.IPv4Network = DEFAULT_SUBNET
    # Prefix of every kernel object this daemon owns.  Short, because Linux
    # interface names hold 15 characters and veth names add a suffix.
    instance: str = "dynod"
    # Apps answer on NAME.<router_domain>.
    router_domain: str = "localhost"
    router_workers: int = 1
    # Where the router listens; loopback by default on test hosts.
    router_bind: str = "0.0.0.0"
    log_level: str = "info"
    # Per-app log history kept on disk.
    log_history_bytes: int = 64 * 1024 * 1024
    # Lines per second one dyno may log; past it lines are dropped and counted.
    log_rate_lines: int = 200_000
    # Extra CA certificates (PEM) trusted for syslog+tls:// and https:// drains.
    drain_ca_file: Path | None = None
    build_memory_bytes: int = 2048 * 1024 * 1024
    build_timeout: float = 25 * 60
    # A release phase still running after this long fails its release.
    release_timeout: float = 60 * 60
    slug_max_bytes: int = 1024 * 1024 * 1024
    # Each app keeps the slugs of its newest N releases for rollbacks; older
    # releases stay listed, and their slugs are removed.
    slugs_kept_per_app: int = 10
    # A slug used (by a dyno start or a rollback) this recently is never
    # collected, whatever the releases say.
    slug_gc_grace: float = 10 * 60
    # Host uids (and gids) handed to apps: app N runs as uid_base + N.  Unset,
    # each instance takes a block of its own (see :meth:`app_uid`).
    uid_base: int | None = None
    # The host's /usr snapshot and filtered /etc live here; shared by daemons
    # that name the same directory.
    stack_dir: Path | None = None
    buildpacks_dir: Path | None = None
    # ACME directory for `certs:auto` (Let's Encrypt unless set), and a CA file
    # to trust for it instead of the system's (a private or test ACME server).
    acme_directory: str = "https://acme-v02.api.letsencrypt.org/directory"
    acme_ca_file: Path | None = None
    # Dyno sizes by name: Heroku's, changed or added to by ``[sizes.NAME]``
    # tables (see :func:`_sizes`).
    sizes: dict[str, Size] = field(default_factory=lambda: dict(SIZES), hash=False)

    def app_uid(self, index: int) -> int:
        """The host uid (and gid) of the app with ``index``.

        The default instance's apps start at 200000; another instance's start
        in a 65536-uid block picked by its name, so that daemons side by side
        do not hand one uid to two apps (an explicit ``uid_base`` wins).
        """
        base = self.uid_base
        if base is None:
            block = (
                0
                if self.instance == "dynod"
                else 1 + zlib.crc32(self.instance.encode()) % 4096
            )
            base = DEFAULT_UID_BASE + block * UID_BLOCK
        return base + index

    @property
    def api_socket(self) -> Path:
        return self.run_dir / "api.sock"

    @property
    def stacks_dir(self) -> Path:
        return self.stack_dir or self.state_dir / "stacks"

    def validate(self) -> Config:
        if not _INSTANCE_RE.fullmatch(self.instance):
            raise UserInputError(
                f"Instance name {self.instance!r} is invalid: use 1-8 lowercase "
                "letters and digits, starting with a letter."
            )
        if self.api_listen is not None:
            _, _, port = self.api_listen.rpartition(":")
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise UserInputError(
                    f"API listener {self.api_listen!r} is invalid: use HOST:PORT, "
                    "for example 127.0.0.1:5000."
                )
        if self.uid_base is not None and not 1000 <= self.uid_base < 2**31 - UID_BLOCK:
            raise UserInputError(
                f"uid_base {self.uid_base} is invalid: use a number from 1000 up, "
                "with room above it for every app's uid."
            )
        if self.dyno_subnet.prefixlen > 28:
            raise UserInputError(
                f"Dyno subnet {self.dyno_subnet} is too small: use a /28 or larger."
            )
        return self


# What a TOML value may be, by the annotation of its setting; sizes are tables.
_KINDS: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "str | None": (str,),
    "int | None": (int,),
    "Path": (Path, str),
    "Path | None": (Path, str),
    "ipaddress.IPv4Network": (ipaddress.IPv4Network, str),
}
_KIND_WORDS = {int: "a whole number", float: "a number", str: "a string"}


def _coerce(name: str, value: Any) -> Any:
    if name == "sizes":
        return _sizes(value)
    annotation = str(Config.__dataclass_fields__[name].type)
    kinds = _KINDS[annotation]
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise UserInputError(
            f"Setting {name} = {value!r} is invalid: use {_KIND_WORDS[kinds[-1]]}."
        )
    if annotation.startswith("Path"):
        return Path(str(value))
    if name == "dyno_subnet":
        try:
            return ipaddress.IPv4Network(value)
        except ValueError as exc:
            raise UserInputError(
                f"Dyno subnet {value!r} is invalid ({exc}): use a network such as "
                "10.217.0.0/16."
            ) from None
    return value


_SIZE_KEYS = {"memory_mb": int, "pids": int, "cpu_shares": int, "cpu_quota": float}


def _sizes(tables: Any) -> dict[str, Size]:
    """Heroku's sizes with ``[sizes.NAME]`` tables applied over them.

    A table for a known size changes the keys it gives; a table for a new
    name must give memory_mb, pids and cpu_shares (cpu_quota, in CPUs, is
    optional).  Sizes cannot be removed: formations may name any of them.
    """
    if not isinstance(tables, dict):
        raise UserInputError(
            "sizes must be tables such as [sizes.standard-1x] with memory_mb, "
            "pids, cpu_shares and optionally cpu_quota."
        )
    sizes = dict(SIZES)
    for name, table in tables.items():
        where = f"[sizes.{name}]"
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,31}", name):
            raise UserInputError(
                f"Size name {name!r} is invalid: use up to 32 lowercase letters, "
                "digits and dashes, starting with a letter."
            )
        if not isinstance(table, dict):
            raise UserInputError(f"{where} must be a table of settings.")
        unknown = sorted(set(table) - set(_SIZE_KEYS))
        if unknown:
            raise UserInputError(
                f"{where} has unknown setting(s) {', '.join(unknown)}: known are "
                f"{', '.join(_SIZE_KEYS)}."
            )
        for key, value in table.items():
            kind = _SIZE_KEYS[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UserInputError(f"{where} {key} = {value!r} is not a number.")
            if value <= 0 or (kind is int and value != int(value)):
                whole = "a whole number " if kind is int else "a number "
                raise UserInputError(
                    f"{where} {key} = {value!r} is invalid: use {whole}above 0."
                )
        old = sizes.get(name)
        if old is None:
            missing = sorted({"memory_mb", "pids", "cpu_shares"} - set(table))
            if missing:
                raise UserInputError(
                    f"{where} is a new size and needs {', '.join(missing)} too."
                )
            old = Size(name, 0, 0, 0)
        sizes[name] = Size(
            name,
            int(table["memory_mb"]) * MB if "memory_mb" in table else old.memory_bytes,
            int(table.get("pids", old.pids)),
            int(table.get("cpu_shares", old.cpu_shares)),
            float(table["cpu_quota"]) if "cpu_quota" in table else old.cpu_quota,
        )
    assert DEFAULT_SIZE in sizes
    return sizes


def load(path: Path | None = None, **overrides: Any) -> Config:
    """Defaults, then the TOML file (if it exists), then non-None overrides."""
    values: dict[str, Any] = {}
    config_path = path or DEFAULT_CONFIG_FILE
    if config_path.exists():
        with config_path.open("rb") as f:
            values.update(tomllib.load(f))
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(Config)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserInputError(
            f"Unknown setting(s) {', '.join(unknown)} in {config_path}: "
            f"known settings are {', '.join(sorted(known))}."
        )
    return replace(Config(), **{k: _coerce(k, v) for k, v in values.items()}).validate()
