"""Reading what a buildpack's ``bin/release`` prints.

Only ``default_process_types`` matters to dynod (``addons`` and the legacy
``config_vars`` are ignored), so this reads the small YAML subset buildpacks
actually emit instead of depending on a YAML library::

    ---
    addons: []
    default_process_types:
      web: "npm start"
      worker: python3 worker.py

The mapping may also be written ``default_process_types: {}``.  Values may be
plain, single-quoted (``''`` escapes a quote) or double-quoted (backslash
escapes).
"""

from __future__ import annotations

import re

from dynod.errors import BuildFailed

_KEY = "default_process_types"
_ENTRY_RE = re.compile(r"^(\s+)([A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')\s*:\s*(.*)$")
_DOUBLE_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "/": "/"}


def _bad(number: int, line: str, why: str) -> BuildFailed:
    return BuildFailed(
        f"The buildpack's bin/release printed line {number} ({line!r}), which "
        f"dynod cannot read: {why}. Print 'default_process_types:' followed by "
        "indented 'type: command' lines."
    )


def _scalar(value: str, number: int, line: str) -> str:
    """The string a YAML scalar stands for (quoted or plain)."""
    if value.startswith('"'):
        out: list[str] = []
        i = 1
        while i < len(value):
            c = value[i]
            if c == '"':
                return "".join(out)
            if c == "\\" and i + 1 < len(value):
                out.append(_DOUBLE_ESCAPES.get(value[i + 1], value[i + 1]))
                i += 2
                continue
            out.append(c)
            i += 1
        raise _bad(number, line, "a double-quoted value is not closed")
    if value.startswith("'"):
        end = re.fullmatch(r"'((?:[^']|'')*)'\s*(#.*)?", value)
        if end is None:
            raise _bad(number, line, "a single-quoted value is not closed")
        return end.group(1).replace("''", "'")
    # A plain scalar ends at a comment introduced by " #".
    return re.split(r"\s+#", value, maxsplit=1)[0].strip()


def parse_release_yaml(text: str) -> dict[str, str]:
    """The ``default_process_types`` mapping in ``text`` (empty when absent).

    Raises :class:`BuildFailed` when the mapping is there but unreadable.
    """
    types: dict[str, str] = {}
    inside = False
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#") or line == "---":
            continue

        # A top-level key starts or ends the section we read.
        if not line[0].isspace():
            inside = False
            key, _, rest = line.partition(":")
            if key.strip() != _KEY:
                continue
            rest = rest.strip()
            if rest in ("", "{}") or rest.startswith("#"):
                inside = rest == "" or rest.startswith("#")
                continue
            raise _bad(number, line, "inline mappings other than '{}' are not read")

        # An indented line inside the section is one process type.
        if inside:
            match = _ENTRY_RE.match(line)
            if match is None:
                raise _bad(number, line, "it is not 'type: command'")
            kind = match.group(2).strip("\"'")
            command = _scalar(match.group(3).strip(), number, line)
            if not command:
                raise _bad(number, line, f"process type {kind!r} has no command")
            types[kind] = command
    return types
