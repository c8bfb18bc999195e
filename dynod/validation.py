"""Checks of user input that the API applies before touching any state.

Each check raises an error from :mod:`dynod.errors` whose message names the
offending value and says what would be accepted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from dynod.errors import InvalidConfig, InvalidFormation, InvalidName, UserInputError
from dynod.runtime.spec import Size
from dynod.state.records import AppSettings

APP_NAME_RE = re.compile(r"[a-z][a-z0-9-]{1,28}[a-z0-9]")
CONFIG_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PROCESS_TYPE_RE = re.compile(r"[A-Za-z0-9_-]{1,63}")
CONFIG_MAX_BYTES = 64 * 1024
# Heroku's per-app limit on dynos of one formation.
MAX_QUANTITY = 100
# An origin-form path without spaces or control characters (RFC 9112 §3.2.1).
HEALTH_PATH_RE = re.compile(r"/[!-~]{0,1023}")
SETTING_NAMES = tuple(AppSettings.__dataclass_fields__)


def app_name(name: object) -> str:
    if not isinstance(name, str) or not APP_NAME_RE.fullmatch(name):
        raise InvalidName(
            f"Name {name!r} is invalid: an app name starts with a letter, holds 3 to "
            "30 lowercase letters, digits and dashes, and ends with a letter or digit."
        )
    return name


def process_type(name: object) -> str:
    if not isinstance(name, str) or not PROCESS_TYPE_RE.fullmatch(name):
        raise InvalidFormation(
            f"Process type {name!r} is invalid: use letters, digits, '_' and '-' "
            "(at most 63)."
        )
    return name


def size(name: object, sizes: Mapping[str, Size]) -> str:
    if not isinstance(name, str) or name.lower() not in sizes:
        raise InvalidFormation(
            f"Dyno size {name!r} is unknown: choose one of {', '.join(sizes)}."
        )
    return name.lower()


def quantity(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidFormation(f"Quantity {value!r} is not a whole number.")
    if not 0 <= value <= MAX_QUANTITY:
        raise InvalidFormation(
            f"Quantity {value} is out of range: use 0 to {MAX_QUANTITY}."
        )
    return value


def config_changes(changes: object, current: dict[str, str]) -> dict[str, str]:
    """Apply a PATCH body (``{KEY: value or None}``) to ``current``.

    Returns the new full config; ``current`` is not modified.
    """
    if not isinstance(changes, dict):
        raise InvalidConfig(
            'Config changes must be a JSON object such as {"KEY": "value"}.'
        )
    new = dict(current)
    for key, value in changes.items():
        if not CONFIG_KEY_RE.fullmatch(key):
            raise InvalidConfig(
                f"Config var name {key!r} is invalid: use letters, digits and '_', "
                "not starting with a digit."
            )
        if key.upper().startswith("DYNOD_"):
            raise InvalidConfig(
                f"Config var name {key} is reserved: names starting with DYNOD_ "
                "are set by dynod."
            )
        if value is None:
            new.pop(key, None)
        elif isinstance(value, str):
            new[key] = value
        else:
            raise InvalidConfig(f"The value of {key} must be a string or null.")
    total = sum(len(k.encode()) + len(v.encode()) for k, v in new.items())
    if total > CONFIG_MAX_BYTES:
        raise InvalidConfig(
            f"Config vars would take {total} bytes; the limit is {CONFIG_MAX_BYTES} "
            "bytes for all keys and values of an app together."
        )
    return new


def settings_changes(changes: object, current: AppSettings) -> AppSettings:
    """Apply a PATCH body of app settings to ``current``, checking each."""
    if not isinstance(changes, dict) or not changes:
        raise UserInputError(
            'Send settings as a JSON object such as {"boot_timeout": 60}.'
        )
    unknown = sorted(set(changes) - set(SETTING_NAMES))
    if unknown:
        raise UserInputError(
            f"Unknown settings {', '.join(unknown)}: known settings are "
            f"{', '.join(SETTING_NAMES)}."
        )
    for key, value in changes.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key in ("boot_timeout", "stop_timeout"):
            if not number or not 1 <= value <= 3600:
                raise UserInputError(
                    f"Setting {key}={value!r} is invalid: use a number of seconds "
                    "from 1 to 3600."
                )
        elif key == "worker_surge":
            whole = isinstance(value, int) and not isinstance(value, bool)
            if not whole or not 0 <= value <= MAX_QUANTITY:
                raise UserInputError(
                    f"Setting worker_surge={value!r} is invalid: use a whole number "
                    f"from 0 (replace all at once) to {MAX_QUANTITY}."
                )
        elif key == "health_path" and not (
            isinstance(value, str) and (value == "" or HEALTH_PATH_RE.fullmatch(value))
        ):
            raise UserInputError(
                f"Setting health_path={value!r} is invalid: use a path such as "
                "/health (starting with '/', no spaces), or nothing for none."
            )
    checked: dict[str, Any] = changes
    return replace(current, **checked)
