"""Table alignment, key-value lines, times and sizes as dynoctl prints them."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from dynod.cli.output import (
    ago,
    format_bytes,
    format_when,
    join_words,
    render_pairs,
    render_table,
)


def test_table_columns_align_and_lines_are_trimmed() -> None:
    lines = render_table(
        ["Rel", "Change", "By"],
        [["v10", "Deploy abc", "root"], ["v9", "Set X", ""]],
    )
    assert lines == [
        "Rel  Change      By",
        "───  ──────────  ────",
        "v10  Deploy abc  root",
        "v9   Set X",
    ]


def test_table_width_ignores_colour_codes() -> None:
    coloured = click.style("up", fg="green")
    lines = render_table(None, [[coloured, "x"], ["crashed", "y"]])
    assert [click.unstyle(line) for line in lines] == ["up       x", "crashed  y"]


def test_empty_table() -> None:
    assert render_table(None, []) == []


def test_pairs_align_values_and_indent_continuations() -> None:
    lines = render_pairs({"A": "1", "LONGER_KEY": "two\nlines", "E": ""})
    assert lines == [
        "A:          1",
        "LONGER_KEY: two",
        "            lines",
        "E:",
    ]


def test_ago_units() -> None:
    assert ago(0) == "~ 0s ago"
    assert ago(59) == "~ 59s ago"
    assert ago(60) == "~ 1m ago"
    assert ago(3599) == "~ 59m ago"
    assert ago(7200) == "~ 2h ago"
    assert ago(86400 * 3 + 5) == "~ 3d ago"
    # A clock a little ahead of ours is not "in the future".
    assert ago(-3) == "~ 0s ago"


def test_when_is_utc_with_age() -> None:
    now = datetime(2026, 12, 3, 18, 15, 30, tzinfo=UTC)
    assert (
        format_when("2026-12-03T18:12:23.123456+00:00", now)
        == "2026/12/03 18:12:23 +0000 (~ 3m ago)"
    )
    # Other offsets are shown in UTC; Z and naive times are UTC.
    assert format_when("2026-12-03T19:12:23+01:00", now).startswith(
        "2026/12/03 18:12:23"
    )
    assert format_when("2026-12-03T18:15:00Z", now).endswith("(~ 30s ago)")
    assert format_when("2026-12-03T18:15:00", now).endswith("(~ 30s ago)")
    assert format_when(None) == ""


def test_bytes() -> None:
    assert format_bytes(None) == ""
    assert format_bytes(512) == "512 B"
    assert format_bytes(2048) == "2 KB"
    assert format_bytes(112 * 1024 * 1024) == "112 MB"
    assert format_bytes(int(2.5 * 1024**3)) == "2.5 GB"


def test_join_words() -> None:
    assert join_words([]) == ""
    assert join_words(["A"]) == "A"
    assert join_words(["A", "B"]) == "A and B"
    assert join_words(["A", "B", "C"]) == "A, B and C"
