"""The slug store: pack, get, unpack with checksum, gc."""

from __future__ import annotations

import hashlib
import os
import tarfile
import threading
import time
from pathlib import Path

import pytest

from dynod.build.slugs import SlugStore
from dynod.errors import BuildFailed, NotFound, RuntimeFailure


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    app = tmp_path / "build" / "app"
    (app / ".profile.d").mkdir(parents=True)
    (app / "app.py").write_text("print('hi')\n")
    (app / "run.sh").write_text("#!/bin/sh\n")
    (app / "run.sh").chmod(0o755)
    (app / ".profile.d" / "python.sh").write_text("export A=1\n")
    (app / "link").symlink_to("app.py")
    # Venvs link to the stack's interpreter: fine inside a dyno's root.
    (app / "python3").symlink_to("/usr/bin/python3")
    return app


@pytest.fixture
def store(tmp_path: Path) -> SlugStore:
    return SlugStore(tmp_path / "slugs")


def test_pack_stores_by_digest(store: SlugStore, app_dir: Path) -> None:
    sizes: list[int] = []
    slug = store.pack(app_dir, progress=sizes.append)

    assert slug.path == store.root / "sha256" / f"{slug.digest}.tgz"
    assert hashlib.sha256(slug.path.read_bytes()).hexdigest() == slug.digest
    assert slug.size == slug.path.stat().st_size == sizes[-1]
    with tarfile.open(slug.path) as tar:
        names = set(tar.getnames())
    assert {"app", "app/app.py", "app/.profile.d/python.sh", "app/link"} <= names
    assert store.get(slug.digest) == slug
    assert list((store.root / "tmp").iterdir()) == []


def test_same_tree_same_digest(
    store: SlugStore, app_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = store.pack(app_dir)
    # Packing later must not change the archive (gzip stamps the time otherwise).
    monkeypatch.setattr(time, "time", lambda: 2e9)
    assert store.pack(app_dir) == first


def test_get_unknown(store: SlugStore) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        store.get("0" * 64)
    with pytest.raises(NotFound, match="64 lowercase hex"):
        store.get("../../etc/passwd")


def test_pack_over_the_limit(tmp_path: Path, app_dir: Path) -> None:
    (app_dir / "noise").write_bytes(os.urandom(300_000))
    small = SlugStore(tmp_path / "small", max_bytes=100_000)
    with pytest.raises(BuildFailed, match="over the limit"):
        small.pack(app_dir)
    assert list((small.root / "sha256").iterdir()) == []
    assert list((small.root / "tmp").iterdir()) == []


def test_unpacked_once_per_uid(store: SlugStore, app_dir: Path) -> None:
    slug = store.pack(app_dir)
    uid, gid = os.getuid(), os.getgid()

    # Several threads asking at once all get the same finished tree.
    results: list[Path] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(store.unpacked(slug.digest, uid, gid))
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    top = store.root / "unpacked" / f"{slug.digest}-{uid}"
    assert results == [top] * 4
    assert (top / "app" / "app.py").read_text() == "print('hi')\n"
    assert os.access(top / "app" / "run.sh", os.X_OK)
    assert os.readlink(top / "app" / "link") == "app.py"
    assert os.readlink(top / "app" / "python3") == "/usr/bin/python3"
    assert (top / "app").stat().st_uid == uid
    assert list((store.root / "tmp").iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_unpacked_is_owned_by_the_app_uid(store: SlugStore, app_dir: Path) -> None:
    slug = store.pack(app_dir)
    top = store.unpacked(slug.digest, 201234, 201235)
    for path in (top / "app", top / "app" / "app.py", top / "app" / "link"):
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == (201234, 201235)


def test_checksum_mismatch_is_r17(store: SlugStore, app_dir: Path) -> None:
    slug = store.pack(app_dir)
    data = bytearray(slug.path.read_bytes())
    data[-10] ^= 0xFF
    slug.path.write_bytes(bytes(data))
    actual = hashlib.sha256(data).hexdigest()
    with pytest.raises(RuntimeFailure) as caught:
        store.unpacked(slug.digest, os.getuid(), os.getgid())
    assert "R17" in str(caught.value)
    assert f"Expected: SHA256:{slug.digest} Actual: SHA256:{actual}" in str(
        caught.value
    )
    assert list((store.root / "unpacked").iterdir()) == []


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_gc_keeps_only_what_is_asked(store: SlugStore, app_dir: Path) -> None:
    first = store.pack(app_dir)
    (app_dir / "app.py").write_text("print('v2')\n")
    second = store.pack(app_dir)
    assert first.digest != second.digest
    uid, gid = os.getuid(), os.getgid()
    for slug in (first, second):
        store.unpacked(slug.digest, uid, gid)
        age(slug.path, 3600)
        age(store.root / "unpacked" / f"{slug.digest}-{uid}", 3600)

    # Both archives kept (a rollback may want the first), one tree unpacked.
    keep = {first.digest, second.digest}
    assert store.gc(keep, {second.digest}, grace=60) == []
    unpacked = sorted(p.name for p in (store.root / "unpacked").iterdir())
    assert unpacked == [f"{second.digest}-{uid}"]

    assert store.gc({second.digest}, {second.digest}, grace=60) == [first.digest]
    assert not first.path.exists()
    assert second.path.exists()
    with pytest.raises(NotFound):
        store.get(first.digest)
    with pytest.raises(NotFound):
        store.claim(first.digest)


def test_gc_spares_what_was_used_within_the_grace(
    store: SlugStore, app_dir: Path
) -> None:
    slug = store.pack(app_dir)
    uid, gid = os.getuid(), os.getgid()
    tree = store.unpacked(slug.digest, uid, gid)
    age(slug.path, 3600)
    age(tree, 3600)

    # A rollback claims the archive, a dyno start the tree: both become young.
    store.claim(slug.digest)
    assert store.unpacked(slug.digest, uid, gid) == tree
    assert store.gc(set(), set(), grace=60) == []
    assert slug.path.exists() and tree.is_dir()

    age(slug.path, 3600)
    age(tree, 3600)
    assert store.gc(set(), set(), grace=60) == [slug.digest]
    assert not slug.path.exists() and not tree.exists()
