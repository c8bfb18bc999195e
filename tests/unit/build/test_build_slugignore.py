"""``.slugignore`` matching and application."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynod.build.slugignore import SlugIgnore, apply_slugignore


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "expected"),
    [
        ("*.log", "debug.log", False, True),
        ("*.log", "a/b/debug.log", False, True),
        ("*.log", "debug.log.txt", False, False),
        ("/docs", "docs", True, True),
        ("/docs", "sub/docs", True, False),
        ("docs", "sub/docs", True, True),
        ("tmp/", "tmp", True, True),
        ("tmp/", "tmp", False, False),
        ("spec/fixtures", "spec/fixtures", True, True),
        ("spec/fixtures", "x/spec/fixtures", True, False),
        ("**/cache", "a/b/cache", True, True),
        ("**/cache", "cache", True, True),
        ("assets/**", "assets/img/x.png", False, True),
        ("a/**/z", "a/z", False, True),
        ("a/**/z", "a/b/c/z", False, True),
        ("file?.txt", "file1.txt", False, True),
        ("file?.txt", "file/.txt", False, False),
        ("[abc].md", "b.md", False, True),
        ("[!abc].md", "b.md", False, False),
        ("[!abc].md", "d.md", False, True),
        ("*.psd # not a comment", "x.psd", False, False),
        ("\\#notes", "#notes", False, True),
    ],
)
def test_matching(pattern: str, path: str, is_dir: bool, expected: bool) -> None:
    assert SlugIgnore(pattern).matches(path, is_dir) is expected


def test_comments_blank_lines_and_negation_are_ignored() -> None:
    rules = SlugIgnore("# a comment\n\n*.log\n!keep.log\n")
    assert rules.matches("keep.log", False)
    assert not rules.matches("# a comment", False)


def test_apply_removes_matches_and_git(tmp_path: Path) -> None:
    app = tmp_path
    for rel in (
        "a.py",
        "logs/x.log",
        "src/b.log",
        "src/c.py",
        "docs/i.md",
        ".git/HEAD",
    ):
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        (app / rel).write_text("x")
    (app / "outside").mkdir()
    (app / "outside" / "keep.py").write_text("x")
    # A symlink to a directory is matched as itself and never followed.
    (app / "docs-link").symlink_to("outside")
    (app / ".slugignore").write_text("*.log\n/docs\ndocs-link\n")

    removed = apply_slugignore(app)

    assert removed == [".git", "docs", "docs-link", "logs/x.log", "src/b.log"]
    assert (app / "src" / "c.py").exists()
    assert (app / "outside" / "keep.py").exists()
    assert not (app / ".git").exists()


def test_apply_without_slugignore_only_drops_git(tmp_path: Path) -> None:
    (tmp_path / "sub" / ".git").mkdir(parents=True)
    (tmp_path / "x.log").write_text("x")
    assert apply_slugignore(tmp_path) == ["sub/.git"]
    assert (tmp_path / "x.log").exists()
