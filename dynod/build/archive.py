"""Source tarballs: packing a directory on the client, unpacking it safely here.

The format is a gzipped tar whose member names are relative to the app root.
Extraction treats the archive as hostile: it streams (so a gzip bomb is stopped
by counting the bytes actually written, not by trusting headers), refuses
anything that could land outside the destination, and leaves nothing behind
when it refuses.
"""

from __future__ import annotations

import gzip
import os
import posixpath
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO

from dynod.build.slugignore import SlugIgnore, apply_slugignore
from dynod.errors import InvalidArchive

__all__ = ["apply_slugignore", "extract_source", "pack_source"]

_CHUNK = 1 << 20
# Tar headers, long names and pax records come on top of file data; allow this
# much of them before the decompressed stream itself counts as a bomb.
_METADATA_ALLOWANCE = 64 << 20


class _Bounded:
    """A read-only stream that refuses to yield more than ``limit`` bytes."""

    def __init__(self, raw: gzip.GzipFile, limit: int) -> None:
        self._raw = raw
        self._left = limit

    def read(self, size: int = -1) -> bytes:
        # Never ask for more than one byte past the limit, so a huge pax header
        # is refused before it is held in memory.
        if size < 0 or size > self._left + 1:
            size = self._left + 1
        data = self._raw.read(size)
        self._left -= len(data)
        if self._left < 0:
            raise InvalidArchive(
                "The source archive expands to more data than allowed: "
                "make the app smaller or list build artefacts in .slugignore."
            )
        return data


def _safe_name(member: tarfile.TarInfo) -> str | None:
    """The member's normalised relative path; None for the root itself."""
    name = member.name
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise InvalidArchive(
            f"Archive member {name!r} has an absolute path: pack paths relative "
            "to the app root."
        )
    if ".." in name.split("/"):
        raise InvalidArchive(
            f"Archive member {name!r} climbs out of the app directory with '..': "
            "remove it from the archive."
        )
    if "\0" in name:
        raise InvalidArchive(f"Archive member {name!r} has a NUL byte in its name.")
    norm = posixpath.normpath(name)
    return None if norm in (".", "") else norm


def _check_parents(dest: Path, rel: str, create: bool = True) -> Path:
    """``dest/rel``, after checking that no directory on the way is a symlink.

    Symlinks inside the tree are allowed, but writing *through* one would let
    a chain of individually harmless links reach outside ``dest``.
    """
    current = dest
    for part in rel.split("/")[:-1]:
        current = current / part
        if current.is_symlink():
            raise InvalidArchive(
                f"Archive member {rel!r} is placed through the symlink "
                f"{current.relative_to(dest).as_posix()!r}: archives may not write "
                "through links."
            )
        if create:
            current.mkdir(mode=0o755, exist_ok=True)
    return dest / rel


def _check_link_target(rel: str, member: tarfile.TarInfo, any_symlink: bool) -> None:
    """Refuse links whose target, resolved where they sit, leaves the tree."""
    target = member.linkname
    if member.issym() and any_symlink:
        return
    if member.issym():
        joined = posixpath.join(posixpath.dirname(rel), target)
    else:
        joined = target
    norm = posixpath.normpath(joined)
    if target.startswith("/") or norm == ".." or norm.startswith("../"):
        kind = "symlink" if member.issym() else "hard link"
        raise InvalidArchive(
            f"Archive member {rel!r} is a {kind} to {target!r}, which is outside the "
            "app directory: make the link relative and inside the app."
        )


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> int:
    """Copy one regular file's data; returns the number of bytes written."""
    source = tar.extractfile(member)
    assert source is not None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    written = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(_CHUNK):
            out.write(chunk)
            written += len(chunk)
    # Keep the owner's rwx bits and read/exec for others; never setuid/setgid.
    os.chmod(path, (member.mode & 0o755) | 0o600)
    return written


def _extract_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    dest: Path,
    rel: str,
    any_symlink: bool,
) -> int:
    """Create one member under ``dest``; returns the file bytes it wrote."""
    path = _check_parents(dest, rel)
    if member.isdir():
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            path.unlink()
        path.mkdir(mode=0o755, exist_ok=True)
        return 0

    # A later member replaces an earlier one of the same name, never follows it.
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        raise InvalidArchive(f"Archive member {rel!r} would replace a directory.")

    if member.isreg():
        return _write_file(tar, member, path)
    _check_link_target(rel, member, any_symlink)
    if member.issym():
        os.symlink(member.linkname, path)
        return 0
    target = _check_parents(dest, posixpath.normpath(member.linkname), create=False)
    if target.is_symlink() or not target.is_file():
        raise InvalidArchive(
            f"Archive member {rel!r} is a hard link to {member.linkname!r}, which "
            "is not a regular file earlier in the archive."
        )
    os.link(target, path)
    return 0


def _extract_all(
    tar: tarfile.TarFile, dest: Path, max_bytes: int, max_files: int, any_symlink: bool
) -> None:
    total = 0
    count = 0
    for member in tar:
        rel = _safe_name(member)
        if rel is None:
            continue
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            raise InvalidArchive(
                f"Archive member {rel!r} is a device, fifo or other special file: "
                "only files, directories and links are allowed."
            )
        count += 1
        if count > max_files:
            raise InvalidArchive(
                f"The source archive has more than {max_files} entries (at {rel!r}): "
                "list generated files in .slugignore."
            )
        # The header's size is checked first, the bytes written count anyway.
        if member.isreg() and total + member.size > max_bytes:
            raise InvalidArchive(
                f"Archive member {rel!r} takes the source past the limit of "
                f"{max_bytes} bytes: make the app smaller."
            )
        total += _extract_member(tar, member, dest, rel, any_symlink)
        if total > max_bytes:
            raise InvalidArchive(
                f"Archive member {rel!r} takes the source past the limit of "
                f"{max_bytes} bytes: make the app smaller."
            )


def extract_source(
    tarball: Path,
    dest: Path,
    max_bytes: int = 1 << 30,
    max_files: int = 200_000,
    *,
    symlinks_may_leave: bool = False,
) -> None:
    """Unpack the gzipped tar ``tarball`` into ``dest`` (created; must not exist
    or be empty).

    Raises :class:`InvalidArchive`, naming the member and the problem, for paths
    that are absolute or use ``..``, links reaching outside the tree, special
    files, more than ``max_files`` entries or ``max_bytes`` of file data, and
    data that is not a readable gzipped tar.  On any error ``dest`` is removed.

    ``symlinks_may_leave`` accepts symlinks to anywhere (a slug's venv links
    to the stack's ``/usr/bin/python3``); they are still never written
    through, so only a dyno, inside its own root, ever follows them.
    """
    dest.mkdir(mode=0o755, parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise InvalidArchive(f"Extraction directory {dest} is not empty.")
    try:
        with tarball.open("rb") as raw, gzip.GzipFile(fileobj=raw) as unzipped:
            bounded = _Bounded(unzipped, max_bytes + _METADATA_ALLOWANCE)
            # Stream mode ("r|"): members are read in order and never seeked.
            with tarfile.open(fileobj=bounded, mode="r|") as tar:  # type: ignore[call-overload]
                _extract_all(tar, dest, max_bytes, max_files, symlinks_may_leave)
    except InvalidArchive:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise InvalidArchive(
            f"The source archive {tarball.name} is not a readable gzipped tar "
            f"({exc}): pack it with 'dynoctl deploy' or 'tar czf'."
        ) from exc


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # The packer's users mean nothing on the server, which chowns to the app.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack_source(
    src_dir: Path, out: IO[bytes], progress: Callable[[int], None] | None = None
) -> None:
    """Write ``src_dir`` as a gzipped tar of root-relative paths to ``out``.

    Leaves out ``.git`` and whatever ``.slugignore`` excludes, and any sockets,
    fifos or devices.  Symlinks are stored as symlinks.  ``progress`` gets the
    running total of file bytes packed.
    """
    rules = SlugIgnore.from_dir(src_dir)
    done = 0
    with (
        gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for dirpath, dirnames, filenames in os.walk(src_dir):
            dirnames.sort()
            base = Path(dirpath).relative_to(src_dir).as_posix()
            prefix = "" if base == "." else base + "/"
            for name in list(dirnames):
                if Path(dirpath, name).is_symlink():
                    dirnames.remove(name)
                    filenames.append(name)
                elif rules.matches(prefix + name, is_dir=True):
                    dirnames.remove(name)
            if prefix:
                tar.add(
                    dirpath,
                    arcname=prefix.rstrip("/"),
                    recursive=False,
                    filter=_anonymous,
                )
            for name in sorted(filenames):
                path = Path(dirpath, name)
                mode = path.lstat().st_mode
                if rules.matches(prefix + name, is_dir=False):
                    continue
                if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                    continue
                tar.add(path, arcname=prefix + name, recursive=False, filter=_anonymous)
                if stat.S_ISREG(mode):
                    done += path.lstat().st_size
                    if progress is not None:
                        progress(done)
