"""``.slugignore``: paths left out of a slug, in gitignore syntax without ``!``.

Rules, as the slug compiler applies them:

- blank lines and lines starting with ``#`` are ignored, as are ``!`` lines
  (negation is not supported, so such a line cannot re-include anything);
- a trailing ``/`` makes the pattern match directories only;
- a pattern with a ``/`` anywhere but at the end is anchored at the app root
  (a leading ``/`` only anchors); any other pattern matches a name at any depth;
- ``*`` and ``?`` never match ``/``, ``[...]`` is a character class, and ``**``
  spans directories (``**/x``, ``x/**``, ``a/**/b``);
- a matched directory goes with everything below it.

``.git`` is always dropped, whatever the file says.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

ALWAYS_DROPPED = frozenset({".git"})


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    dirs_only: bool


def _class_end(glob: str, start: int) -> int:
    """Index of the ``]`` closing the class opened at ``start``, or -1."""
    j = start + 1
    if glob[j : j + 1] == "!":
        j += 1
    # A "]" right after the opening (or its "!") is a literal member.
    if glob[j : j + 1] == "]":
        j += 1
    return glob.find("]", j)


def _translate(glob: str) -> str:
    """Turn one gitignore glob (already stripped of anchors) into a regex."""
    out: list[str] = []
    i = 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**/", i):
            # Zero or more whole directories.
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and (end := _class_end(glob, i)) > 0:
            body = glob[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        elif c == "\\" and i + 1 < len(glob):
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


class SlugIgnore:
    """A parsed ``.slugignore``; :meth:`matches` takes root-relative POSIX paths."""

    def __init__(self, text: str) -> None:
        self._rules: list[_Rule] = []
        for raw in text.splitlines():
            line = raw.rstrip()
            if not line or line.startswith(("#", "!")):
                continue
            dirs_only = line.endswith("/")
            line = line.rstrip("/")
            if not line:
                continue
            anchored = "/" in line
            line = line.lstrip("/")
            prefix = "" if anchored else "(?:.*/)?"
            regex = re.compile(prefix + _translate(line), re.DOTALL)
            self._rules.append(_Rule(regex, dirs_only))

    @classmethod
    def from_dir(cls, root: Path) -> SlugIgnore:
        """The rules of ``root/.slugignore``, or no rules when it is absent."""
        path = root / ".slugignore"
        if path.is_symlink() or not path.is_file():
            return cls("")
        return cls(path.read_text(errors="replace"))

    def matches(self, rel: str, is_dir: bool) -> bool:
        """True when the path ``rel`` (relative to the app root) is ignored."""
        if rel.split("/")[-1] in ALWAYS_DROPPED:
            return True
        return any(
            r.regex.fullmatch(rel) and (is_dir or not r.dirs_only) for r in self._rules
        )


def apply_slugignore(root: Path) -> list[str]:
    """Delete everything under ``root`` that ``root/.slugignore`` excludes.

    Also deletes every ``.git`` directory.  Symlinks are matched as files and
    never followed.  Returns the removed paths, relative to ``root``, sorted.
    """
    rules = SlugIgnore.from_dir(root)
    removed: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"

        # Prune matched directories so the walk never descends into them.
        for name in list(dirnames):
            path = Path(dirpath, name)
            if path.is_symlink():
                # os.walk lists symlinks to directories among dirnames.
                dirnames.remove(name)
                filenames.append(name)
            elif rules.matches(prefix + name, is_dir=True):
                dirnames.remove(name)
                shutil.rmtree(path)
                removed.append(prefix + name)

        for name in filenames:
            if rules.matches(prefix + name, is_dir=False):
                Path(dirpath, name).unlink()
                removed.append(prefix + name)
    return sorted(removed)
