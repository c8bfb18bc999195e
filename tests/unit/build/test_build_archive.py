"""Safe extraction of source tarballs, and packing them on the client side."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import time
from pathlib import Path

import pytest

from dynod.build.archive import extract_source, pack_source
from dynod.errors import InvalidArchive

Member = tuple[tarfile.TarInfo, bytes | None]


def _file(name: str, data: bytes = b"x", mode: int = 0o644) -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    return info, data


def _special(name: str, kind: bytes, linkname: str = "") -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def _tarball(path: Path, members: list[Member]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "dest"


def test_extracts_files_dirs_and_inside_links(tmp_path: Path, dest: Path) -> None:
    dir_info, _ = _special("./lib", tarfile.DIRTYPE)
    tarball = _tarball(
        tmp_path / "ok.tgz",
        [
            (dir_info, None),
            _file("./lib/a.py", b"print(1)\n"),
            _file("bin/run", b"#!/bin/sh\n", mode=0o4755),
            _special("lib/b.py", tarfile.SYMTYPE, "a.py"),
            _special("lib/up", tarfile.SYMTYPE, "../bin/run"),
            _special("c.py", tarfile.LNKTYPE, "lib/a.py"),
        ],
    )
    extract_source(tarball, dest)
    assert (dest / "lib/a.py").read_text() == "print(1)\n"
    assert (dest / "lib/b.py").read_text() == "print(1)\n"
    assert os.readlink(dest / "lib/up") == "../bin/run"
    assert (dest / "c.py").stat().st_ino == (dest / "lib/a.py").stat().st_ino
    # setuid never survives extraction; the exec bits do.
    mode = stat.S_IMODE((dest / "bin/run").stat().st_mode)
    assert mode == 0o755


@pytest.mark.parametrize(
    ("members", "words"),
    [
        ([_file("../evil")], "climbs out"),
        ([_file("a/../../evil")], "climbs out"),
        ([_file("/etc/evil")], "absolute path"),
        ([_special("l", tarfile.SYMTYPE, "/etc/passwd")], "outside the app"),
        ([_special("a/l", tarfile.SYMTYPE, "../../x")], "outside the app"),
        ([_special("h", tarfile.LNKTYPE, "../etc/passwd")], "climbs out|outside"),
        ([_special("h", tarfile.LNKTYPE, "/etc/passwd")], "outside the app"),
        ([_special("h", tarfile.LNKTYPE, "missing")], "not a regular file"),
        ([_special("dev", tarfile.CHRTYPE)], "device, fifo"),
        ([_special("blk", tarfile.BLKTYPE)], "device, fifo"),
        ([_special("fifo", tarfile.FIFOTYPE)], "device, fifo"),
        # Each link is harmless alone; writing through them would escape.
        (
            [
                _special("p", tarfile.SYMTYPE, "."),
                _special("p/l", tarfile.SYMTYPE, ".."),
                _file("p/l/escaped"),
            ],
            "through the symlink",
        ),
    ],
)
def test_refuses_unsafe_members(
    tmp_path: Path, dest: Path, members: list[Member], words: str
) -> None:
    tarball = _tarball(tmp_path / "bad.tgz", [_file("ok.txt"), *members])
    with pytest.raises(InvalidArchive, match=words):
        extract_source(tarball, dest)
    assert not dest.exists()
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "escaped").exists()


def test_refuses_too_many_files(tmp_path: Path, dest: Path) -> None:
    tarball = _tarball(tmp_path / "many.tgz", [_file(f"f{i}") for i in range(11)])
    with pytest.raises(InvalidArchive, match=r"more than 10 entries.*'f10'"):
        extract_source(tarball, dest, max_files=10)
    assert not dest.exists()


def test_refuses_too_much_data(tmp_path: Path, dest: Path) -> None:
    members = [_file(f"f{i}", b"y" * 400) for i in range(3)]
    tarball = _tarball(tmp_path / "big.tgz", members)
    with pytest.raises(InvalidArchive, match=r"'f2'.*limit of 1000 bytes"):
        extract_source(tarball, dest, max_bytes=1000)


def _zeros_bomb(path: Path, header: bytes, size: int) -> Path:
    """``header`` then ``size`` zero bytes, as a small multi-member gzip file."""
    block = gzip.compress(bytes(1 << 20), compresslevel=9)
    with path.open("wb") as f:
        f.write(gzip.compress(header))
        for _ in range(size >> 20):
            f.write(block)
    return path


def test_gzip_bomb_is_stopped_quickly(tmp_path: Path, dest: Path) -> None:
    # One member whose header claims 2 GB of zeros, and whose data is just that.
    info = tarfile.TarInfo("zeros")
    info.size = 2 << 30
    header = info.tobuf(format=tarfile.PAX_FORMAT)
    bomb = _zeros_bomb(tmp_path / "bomb.tgz", header, info.size)
    assert bomb.stat().st_size < 10 << 20
    started = time.monotonic()
    with pytest.raises(InvalidArchive, match=r"'zeros'.*limit"):
        extract_source(bomb, dest, max_bytes=10 << 20)
    assert time.monotonic() - started < 2
    assert not dest.exists()


def test_huge_pax_header_is_stopped_by_the_stream_limit(
    tmp_path: Path, dest: Path
) -> None:
    # A pax extended header claiming 2 GB: tarfile would read it all at once.
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = 2 << 30
    header = info.tobuf(format=tarfile.USTAR_FORMAT)
    bomb = _zeros_bomb(tmp_path / "pax.tgz", header, info.size)
    started = time.monotonic()
    with pytest.raises(InvalidArchive, match="expands to more data than allowed"):
        extract_source(bomb, dest, max_bytes=10 << 20)
    assert time.monotonic() - started < 3
    assert not dest.exists()


def test_lying_headers_are_caught_by_counting(tmp_path: Path, dest: Path) -> None:
    # Many small members: each header passes alone, the running total does not.
    members = [_file(f"f{i}", bytes(100_000)) for i in range(30)]
    tarball = _tarball(tmp_path / "sum.tgz", members)
    with pytest.raises(InvalidArchive, match="limit of 1000000 bytes"):
        extract_source(tarball, dest, max_bytes=1_000_000)


@pytest.mark.parametrize(
    "data",
    [b"", b"not gzip at all", gzip.compress(b"not a tar" * 100)],
    ids=["empty", "not-gzip", "gzip-not-tar"],
)
def test_unreadable_data(tmp_path: Path, dest: Path, data: bytes) -> None:
    tarball = tmp_path / "junk.tgz"
    tarball.write_bytes(data)
    with pytest.raises(InvalidArchive, match="not a readable gzipped tar"):
        extract_source(tarball, dest)
    assert not dest.exists()


def test_truncated_archive(tmp_path: Path, dest: Path) -> None:
    tarball = _tarball(tmp_path / "t.tgz", [_file("big", os.urandom(200_000))])
    tarball.write_bytes(tarball.read_bytes()[:50_000])
    with pytest.raises(InvalidArchive, match="not a readable gzipped tar"):
        extract_source(tarball, dest)
    assert not dest.exists()


def test_pack_source_round_trip(tmp_path: Path, dest: Path) -> None:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / ".git" / "objects").mkdir(parents=True)
    (src / ".git" / "HEAD").write_text("ref")
    (src / "pkg" / "m.py").write_text("x = 1\n")
    (src / "debug.log").write_text("noise")
    (src / ".slugignore").write_text("*.log\n")
    (src / "link").symlink_to("pkg/m.py")
    os.mkfifo(src / "fifo")
    seen: list[int] = []

    out = tmp_path / "src.tgz"
    with out.open("wb") as f:
        pack_source(src, f, progress=seen.append)
    extract_source(out, dest)

    assert (dest / "pkg" / "m.py").read_text() == "x = 1\n"
    assert os.readlink(dest / "link") == "pkg/m.py"
    assert not (dest / ".git").exists()
    assert not (dest / "debug.log").exists()
    assert not (dest / "fifo").exists()
    assert seen and seen[-1] == len("x = 1\n") + len("*.log\n")
