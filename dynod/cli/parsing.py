"""Parsing of the ``KEY=VALUE`` style arguments of dynoctl commands.

Syntax errors raise :class:`click.BadParameter` (exit 2, usage error) naming the
bad argument.  A well-formed request that cannot apply to the app as it is (a
relative scale below zero, a type the app does not have) raises
:class:`~dynod.errors.InvalidFormation` (exit 1), as the server would.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click

from dynod.errors import InvalidFormation

# As Heroku's CLI: ``web=3``, ``web+1``, ``worker-2``, each with an optional
# ``:SIZE``.  The type is matched lazily so that ``my-worker-1`` means
# ``my-worker`` minus one.
_SCALE_RE = re.compile(r"([\w-]+?)([=+-])(\d+)(?::([\w-]+))?")
_TYPE_RE = re.compile(r"[A-Za-z0-9_-]{1,63}")
_CONFIG_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VERSION_RE = re.compile(r"[vV]?(\d+)")
# Each setting apps:settings:set takes, with how its value is written.
SETTINGS = {
    "boot_timeout": "SECONDS",
    "stop_timeout": "SECONDS",
    "health_path": "/PATH",
    "worker_surge": "N",
}


@dataclass(frozen=True)
class ScaleChange:
    """One ``ps:scale`` argument: ``op`` is ``=``, ``+`` or ``-``."""

    type: str
    op: str
    amount: int
    size: str | None


def parse_scale_arg(arg: str) -> ScaleChange:
    """Parse one ``ps:scale`` argument, or raise BadParameter naming it."""
    m = _SCALE_RE.fullmatch(arg)
    if not m:
        raise click.BadParameter(
            f"{arg!r} is not a scale; write TYPE=N, TYPE+N or TYPE-N, each "
            "optionally followed by :SIZE (web=3, worker+1, web=2:standard-2x).",
            param_hint="'ps:scale'",
        )
    ptype, op, amount, size = m.groups()
    return ScaleChange(ptype, op, int(amount), size.lower() if size else None)


def parse_scale(args: Sequence[str]) -> list[ScaleChange]:
    """Parse every ``ps:scale`` argument; a type named twice is a usage error."""
    changes = [parse_scale_arg(a) for a in args]
    seen: set[str] = set()
    for change, arg in zip(changes, args, strict=True):
        if change.type in seen:
            raise click.BadParameter(
                f"{arg!r} names process type {change.type!r} a second time; "
                "give each type once.",
                param_hint="'ps:scale'",
            )
        seen.add(change.type)
    return changes


def needs_formation(changes: Sequence[ScaleChange]) -> bool:
    """Whether resolving these changes needs the current quantities."""
    return any(c.op in ("+", "-") for c in changes)


def scale_updates(
    changes: Sequence[ScaleChange], current: Mapping[str, int] | None = None
) -> list[dict[str, Any]]:
    """The ``updates`` body of ``PATCH /formation`` for parsed changes.

    ``current`` maps each process type to its quantity; it is needed only for
    relative changes.  Raises InvalidFormation when a relative change names a
    type the app does not have or would leave fewer than zero dynos.
    """
    updates: list[dict[str, Any]] = []
    for c in changes:
        update: dict[str, Any] = {"type": c.type, "quantity": c.amount}
        if c.op in ("+", "-"):
            have = (current or {}).get(c.type)
            if have is None:
                known = ", ".join(sorted(current or {})) or "none"
                raise InvalidFormation(
                    f"The app has no process type {c.type!r} to scale by "
                    f"{c.op}{c.amount} (its types: {known}); check the Procfile."
                )
            quantity = have + c.amount if c.op == "+" else have - c.amount
            if quantity < 0:
                raise InvalidFormation(
                    f"Scaling {c.type} by -{c.amount} would leave {quantity} dynos "
                    f"(it runs {have}); scale by at most -{have}."
                )
            update["quantity"] = quantity
        if c.size is not None:
            update["size"] = c.size
        updates.append(update)
    return updates


def parse_types(args: Sequence[str]) -> list[dict[str, str]]:
    """``ps:type web=standard-2x worker=performance-m`` as formation updates."""
    updates: list[dict[str, str]] = []
    for arg in args:
        ptype, sep, size = arg.partition("=")
        if (
            not sep
            or not _TYPE_RE.fullmatch(ptype)
            or not re.fullmatch(r"[\w-]+", size)
        ):
            raise click.BadParameter(
                f"{arg!r} is not TYPE=SIZE (for example web=standard-2x).",
                param_hint="'ps:type'",
            )
        updates.append({"type": ptype, "size": size.lower()})
    return updates


def parse_assignments(args: Sequence[str], *, hint: str) -> dict[str, str]:
    """``KEY=VALUE`` arguments as a dict; a value is all after the first ``=``."""
    out: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not _CONFIG_KEY_RE.fullmatch(key):
            raise click.BadParameter(
                f"{arg!r} is not KEY=VALUE with a key of letters, digits and "
                "underscores that does not start with a digit.",
                param_hint=hint,
            )
        out[key] = value
    return out


def parse_keys(args: Sequence[str], *, hint: str) -> list[str]:
    """Config var names, each checked for the key syntax."""
    for key in args:
        if not _CONFIG_KEY_RE.fullmatch(key):
            raise click.BadParameter(
                f"{key!r} is not a config var name (letters, digits and "
                "underscores, not starting with a digit).",
                param_hint=hint,
            )
    return list(args)


def parse_settings(args: Sequence[str]) -> dict[str, int | str]:
    """``boot_timeout=S stop_timeout=S health_path=/PATH worker_surge=N``.

    Seconds are whole and 1 or more; ``health_path=`` (empty) removes the
    health check.  The daemon checks ranges and paths again.
    """
    out: dict[str, int | str] = {}
    forms = ", ".join(f"{k}={v}" for k, v in SETTINGS.items())
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or key not in SETTINGS:
            raise click.BadParameter(
                f"{arg!r} is not a setting; write one of {forms}.",
                param_hint="'apps:settings:set'",
            )
        if key == "health_path":
            if value and not value.startswith("/"):
                raise click.BadParameter(
                    f"{arg!r} needs a path starting with '/' (or nothing, for no "
                    "health check).",
                    param_hint="'apps:settings:set'",
                )
            out[key] = value
        elif key == "worker_surge":
            if not value.isdigit():
                raise click.BadParameter(
                    f"{arg!r} needs a whole number, 0 or more.",
                    param_hint="'apps:settings:set'",
                )
            out[key] = int(value)
        else:
            if not value.isdigit() or int(value) < 1:
                raise click.BadParameter(
                    f"{arg!r} needs a whole number of seconds, 1 or more.",
                    param_hint="'apps:settings:set'",
                )
            out[key] = int(value)
    return out


def parse_version(value: str) -> int:
    """A release version written ``v12`` or ``12``."""
    m = _VERSION_RE.fullmatch(value)
    if not m:
        raise click.BadParameter(
            f"{value!r} is not a release version; write it as v12 or 12.",
            param_hint="'RELEASE'",
        )
    return int(m.group(1))
