"""A build's directories on the host, laid out before its dyno starts.

Under ``work_dir/<build_id>`` (mode 0700, root's)::

    app/     the extracted source, owned by the app uid  -> /app (rw)
    env/     one file per config var, 0400, app uid      -> /env (ro)
    driver/  compile.sh                                  -> /dynod (ro)
    output/  where compile.sh reports back, app uid      -> /output (rw)

plus the app's persistent cache, ``cache_root/<app>`` -> /cache (rw).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from dynod.build import archive
from dynod.build.output import read_untrusted
from dynod.build.procfile import parse_procfile
from dynod.errors import InvalidConfig

COMPILE_SH = Path(__file__).with_name("compile.sh")
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _write_env_dir(env_dir: Path, env: dict[str, str], uid: int, gid: int) -> None:
    env_dir.mkdir(mode=0o755)
    for key, value in env.items():
        # The key becomes a file name: it must not be able to leave the dir.
        if not _ENV_KEY_RE.fullmatch(key):
            raise InvalidConfig(
                f"Config var name {key!r} is invalid: use letters, digits and '_', "
                "not starting with a digit."
            )
        path = env_dir / key
        path.write_text(value)
        path.chmod(0o400)
        os.chown(path, uid, gid)


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    os.chown(top, uid, gid)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


def prepare(
    top: Path, source: Path, env: dict[str, str], cache: Path, uid: int, gid: int
) -> list[str]:
    """Lay out a build under ``top`` from the tarball ``source`` (blocking).

    Returns the paths ``.slugignore`` removed.  Raises
    :class:`dynod.errors.InvalidArchive`, :class:`dynod.errors.InvalidProcfile`
    or :class:`InvalidConfig` for bad input, before any buildpack runs.
    """
    # A daemon that died mid-build may have left this id's directory.
    shutil.rmtree(top, ignore_errors=True)
    top.mkdir(mode=0o700, parents=True)

    # The source, unpacked safely, trimmed by .slugignore, its Procfile checked.
    app = top / "app"
    archive.extract_source(source, app)
    removed = archive.apply_slugignore(app)
    procfile = read_untrusted(app / "Procfile")
    if procfile is not None:
        parse_procfile(procfile)

    # ENV_DIR, the driver, the output dir and the persistent cache.
    _write_env_dir(top / "env", env, uid, gid)
    (top / "driver").mkdir(mode=0o755)
    shutil.copy(COMPILE_SH, top / "driver" / "compile.sh")
    (top / "output").mkdir(mode=0o755)
    os.chown(top / "output", uid, gid)
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(cache, uid, gid)

    # Everything the buildpacks write to is the app's.
    _chown_tree(app, uid, gid)
    return removed
