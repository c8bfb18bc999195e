"""The slug store: immutable, content-addressed archives of built apps.

Layout under the store's root::

    sha256/<hex>.tgz          a slug: gzipped tar of ``app/...``
    unpacked/<hex>-<uid>/app  the slug extracted for one app uid (overlay lower)
    locks/<hex>.lock          serialises publishing, use and removal of an archive
    locks/<hex>-<uid>.lock    the same for one unpacked tree
    tmp/                      archives being written, trees being extracted

A slug's digest is the lowercase hex SHA-256 of its archive.  Archives and
unpacked trees appear by ``rename``, so a reader never sees half of one.  All
methods block; call them from a thread when on the event loop.

Garbage collection (:meth:`SlugStore.gc`) removes what its caller no longer
keeps, but never anything used within the last ``grace`` seconds: using an
archive or tree (:meth:`SlugStore.claim`, :meth:`SlugStore.unpacked`) touches
it under the same lock the collector takes, so a slug picked for a dyno or a
rollback is never removed between the pick and its use.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import structlog

from dynod.build.archive import extract_source
from dynod.errors import BuildFailed, NotFound, RuntimeFailure

log = structlog.get_logger("dynod.build")

_DIGEST_RE = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Slug:
    digest: str
    size: int
    path: Path


class _HashingWriter:
    """Passes writes to a file while hashing and counting them."""

    def __init__(self, out: IO[bytes], progress: Callable[[int], None] | None):
        self._out = out
        self._progress = progress
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self.sha.update(data)
        self.size += len(data)
        if self._progress is not None:
            self._progress(self.size)
        return len(data)

    def flush(self) -> None:
        self._out.flush()


def _check_digest(digest: str) -> None:
    if not _DIGEST_RE.fullmatch(digest):
        raise NotFound(
            f"Slug {digest!r} does not exist: slug ids are 64 lowercase hex digits."
        )


def _sha256_of(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


class SlugStore:
    def __init__(self, root: Path, max_bytes: int = 1 << 30) -> None:
        self.root = root
        self.max_bytes = max_bytes
        for sub in ("sha256", "unpacked", "locks", "tmp"):
            (root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        # The unpacked trees are overlay lower layers read by dyno uids.
        (root / "unpacked").chmod(0o711)
        root.chmod(0o711)

    def _archive(self, digest: str) -> Path:
        return self.root / "sha256" / f"{digest}.tgz"

    def pack(
        self, app_dir: Path, progress: Callable[[int], None] | None = None
    ) -> Slug:
        """Archive ``app_dir``'s contents under ``app/`` and store the result.

        ``progress`` gets the running count of compressed bytes.  Symlinks are
        stored, never followed.  Raises :class:`BuildFailed` when the archive
        exceeds the store's ``max_bytes``.
        """
        fd, tmp_name = tempfile.mkstemp(dir=self.root / "tmp", suffix=".tgz")
        tmp = Path(tmp_name)
        try:
            # Write the archive once, hashing it on the way to disk.
            with os.fdopen(fd, "wb") as raw:
                writer = _HashingWriter(raw, progress)
                # A fixed gzip timestamp: the same tree packs to the same digest.
                with (
                    gzip.GzipFile(fileobj=writer, mode="wb", mtime=0) as zipped,
                    tarfile.open(
                        fileobj=zipped, mode="w|", format=tarfile.PAX_FORMAT
                    ) as tar,
                ):
                    tar.add(app_dir, arcname="app", filter=_owned_by_root)
                raw.flush()
                os.fsync(raw.fileno())
            if writer.size > self.max_bytes:
                raise BuildFailed(
                    f"The compiled slug is {writer.size // (1 << 20)} MB, over the "
                    f"limit of {self.max_bytes // (1 << 20)} MB: list files the app "
                    "does not need at runtime in .slugignore."
                )

            # Publish it under its digest; an identical slug may already be there.
            digest = writer.sha.hexdigest()
            final = self._archive(digest)
            tmp.chmod(0o644)
            with self._locked(digest):
                os.replace(tmp, final)
            return Slug(digest=digest, size=writer.size, path=final)
        finally:
            tmp.unlink(missing_ok=True)

    def get(self, digest: str) -> Slug:
        """The stored slug ``digest``; :class:`NotFound` when there is none."""
        _check_digest(digest)
        path = self._archive(digest)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise NotFound(f"Slug {digest} does not exist in the slug store.") from None
        return Slug(digest=digest, size=size, path=path)

    def claim(self, digest: str) -> Slug:
        """:meth:`get`, marking the slug used now so that :meth:`gc` keeps it."""
        with self._locked(digest):
            slug = self.get(digest)
            os.utime(slug.path)
            return slug

    @contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        # flock works between threads too, as each call opens its own file.
        with (self.root / "locks" / f"{name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def unpacked(self, digest: str, uid: int, gid: int) -> Path:
        """A directory holding the slug's ``app/``, owned by ``uid``/``gid``.

        Extracted once per digest and uid; concurrent callers wait for the
        first.  The archive's checksum is verified before extraction; a
        mismatch raises :class:`RuntimeFailure` with Heroku's R17 wording.
        """
        slug = self.claim(digest)
        name = f"{digest}-{uid}"
        final = self.root / "unpacked" / name
        with self._locked(name):
            if final.is_dir():
                os.utime(final)
                return final

            # Never unpack an archive whose bytes are not the ones we stored.
            actual = _sha256_of(slug.path)
            if actual != digest:
                raise RuntimeFailure(
                    "Error R17 (Checksum error) -> Checksum does match expected "
                    f"value. Expected: SHA256:{digest} Actual: SHA256:{actual}. "
                    "Deploy the app again to store a good slug."
                )

            # Extract beside the final place, hand it to the app, then publish.
            staging = Path(tempfile.mkdtemp(dir=self.root / "tmp"))
            try:
                extract_source(
                    slug.path,
                    staging / "tree",
                    max_bytes=1 << 36,
                    max_files=5_000_000,
                    symlinks_may_leave=True,
                )
                _chown_tree(staging / "tree" / "app", uid, gid)
                (staging / "tree").chmod(0o755)
                os.rename(staging / "tree", final)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            log.info("slug unpacked", digest=digest, uid=uid)
            return final

    def gc(self, keep: set[str], keep_unpacked: set[str], grace: float) -> list[str]:
        """Remove archives whose digest is not in ``keep`` and unpacked trees
        whose digest is not in ``keep_unpacked``, sparing anything used within
        the last ``grace`` seconds.

        Returns the digests whose archives were removed.
        """
        removed: list[str] = []
        for path in (self.root / "sha256").glob("*.tgz"):
            if path.stem not in keep and self._remove_if_idle(path, path.stem, grace):
                removed.append(path.stem)
        for path in (self.root / "unpacked").iterdir():
            if path.name.split("-", 1)[0] not in keep_unpacked:
                self._remove_if_idle(path, path.name, grace)
        return sorted(removed)

    def _remove_if_idle(self, path: Path, lock_name: str, grace: float) -> bool:
        # The lock file stays: removing it would let a waiter on the old file
        # and a newcomer on a new one both hold "the" lock.
        with self._locked(lock_name):
            try:
                if time.time() - path.lstat().st_mtime < grace:
                    return False
            except FileNotFoundError:
                return False
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return True


def _owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    # Ownership is decided at unpack time, per app uid.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
        return None
    return info


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    os.lchown(top, uid, gid)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)
