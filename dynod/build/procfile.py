"""The Procfile: which command each process type runs.

Format: one ``type: command`` per line; blank lines and ``#`` comments are
ignored.  Types keep the case they are written in and match
``^[A-Za-z0-9_-]{1,63}$``.
"""

from __future__ import annotations

import re

from dynod.errors import InvalidProcfile

_LINE_RE = re.compile(r"^([^:\s]+)\s*:\s*(.*)$")
_TYPE_RE = re.compile(r"[A-Za-z0-9_-]{1,63}")


def parse_procfile(text: str) -> dict[str, str]:
    """Map each process type to its command, in file order.

    Raises :class:`InvalidProcfile` naming the line number for a line that is
    not ``type: command``, a bad type name, an empty command or a type that
    appears twice.
    """
    types: dict[str, str] = {}
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue

        # Split the line into its type and its command.
        match = _LINE_RE.match(line)
        if match is None:
            raise InvalidProcfile(
                f"Procfile line {number} ({line!r}) is not 'type: command': "
                "write each process type as 'web: python3 app.py'."
            )
        kind, command = match.group(1), match.group(2).strip()

        # Check the pieces before accepting them.
        if not _TYPE_RE.fullmatch(kind):
            raise InvalidProcfile(
                f"Procfile line {number} names the process type {kind!r}: use 1-63 "
                "letters, digits, '_' or '-'."
            )
        if not command:
            raise InvalidProcfile(
                f"Procfile line {number} gives process type {kind!r} no command: "
                "add the command after the colon."
            )
        if kind in types:
            raise InvalidProcfile(
                f"Procfile line {number} declares process type {kind!r} a second "
                "time: keep one line per type."
            )
        types[kind] = command
    return types
