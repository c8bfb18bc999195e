"""Write the pip requirements (and constraints) an app declares.

Usage: requirements.py BUILD_DIR REQUIREMENTS_OUT CONSTRAINTS_OUT

Sources, first found wins:

- ``requirements.txt``: used as it is (pip resolves ``-r`` includes itself);
- ``pyproject.toml``: ``[project] dependencies``; with a ``uv.lock`` beside
  it, every registry package the lock pins becomes a constraint, so pip
  installs the locked versions of whatever it needs on this platform;
- ``Pipfile``: ``Pipfile.lock``'s ``default`` pins when present, else the
  ``[packages]`` table.

Prints one line saying which source it used.  Exits 1, with a message, on a
file it cannot read.  Runs on the stack's python3 (3.11+, for tomllib).
"""

from __future__ import annotations

import json
import sys
import tomllib
from collections import Counter
from pathlib import Path


def _meaningful(lines: list[str]) -> list[str]:
    return [x for x in lines if x.strip() and not x.lstrip().startswith("#")]


def from_pyproject(app: Path) -> tuple[list[str], list[str]]:
    project = tomllib.loads((app / "pyproject.toml").read_text()).get("project", {})
    requirements = list(project.get("dependencies", []))
    constraints: list[str] = []
    lock = app / "uv.lock"
    if lock.is_file():
        packages = tomllib.loads(lock.read_text()).get("package", [])
        pinned = [
            (p["name"], p["version"])
            for p in packages
            if "registry" in p.get("source", {}) and "version" in p
        ]
        # A lock may pin one name twice (per Python version); let pip choose then.
        counts = Counter(name for name, _ in pinned)
        constraints = [f"{n}=={v}" for n, v in pinned if counts[n] == 1]
    return requirements, constraints


def from_pipfile(app: Path) -> list[str]:
    lock = app / "Pipfile.lock"
    if lock.is_file():
        default = json.loads(lock.read_text()).get("default", {})
        return [name + spec.get("version", "") for name, spec in default.items()]
    packages = tomllib.loads((app / "Pipfile").read_text()).get("packages", {})
    out = []
    for name, spec in packages.items():
        version = spec if isinstance(spec, str) else spec.get("version", "*")
        out.append(name if version == "*" else name + version)
    return out


def main(app: Path, requirements_out: Path, constraints_out: Path) -> int:
    constraints: list[str] = []
    try:
        if (app / "requirements.txt").is_file():
            lines = (app / "requirements.txt").read_text().splitlines()
            requirements = _meaningful(lines)
            print(f"Requirements from requirements.txt: {len(requirements)} line(s)")
        elif (app / "pyproject.toml").is_file():
            requirements, constraints = from_pyproject(app)
            pinned = f", {len(constraints)} pinned by uv.lock" if constraints else ""
            print(f"Requirements from pyproject.toml: {len(requirements)}{pinned}")
        else:
            requirements = from_pipfile(app)
            print(f"Requirements from Pipfile: {len(requirements)}")
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        print(f" !     Cannot read the app's requirements: {exc}")
        return 1
    requirements_out.write_text("".join(x + "\n" for x in requirements))
    constraints_out.write_text("".join(x + "\n" for x in constraints))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
