"""Checks of user input that the API applies before touching any state.

Each check raises an error from :mod:`dynod.errors` whose message names the
offending value and says what would be accepted.
"""

from __future__ import annotations

import re

from dynod.errors import InvalidConfig, InvalidFormation, InvalidName
from dynod.runtime.spec import SIZES

APP_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,28}[a-z0-9]$")
CONFIG_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PROCESS_TYPE_RE = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
CONFIG_MAX_BYTES = 64 * 1024
# Heroku's per-app limit on dynos of one formation.
MAX_QUANTITY = 100


def app_name(name: object) -> str:
    if not isinstance(name, str) or not APP_NAME_RE.match(name):
        raise InvalidName(
            f"Name {name!r} is invalid: an app name starts with a letter, holds 3 to "
            "30 lowercase letters, digits and dashes, and ends with a letter or digit."
        )
    return name


def process_type(name: object) -> str:
    if not isinstance(name, str) or not PROCESS_TYPE_RE.match(name):
        raise InvalidFormation(
            f"Process type {name!r} is invalid: use letters, digits, '_' and '-' "
            "(at most 63)."
        )
    return name


def size(name: object) -> str:
    if not isinstance(name, str) or name.lower() not in SIZES:
        raise InvalidFormation(
            f"Dyno size {name!r} is unknown: choose one of {', '.join(SIZES)}."
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
        if not CONFIG_KEY_RE.match(key):
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
