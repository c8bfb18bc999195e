"""Parsing and validating routes.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dynod.router.table import AppState, RouteTableError, parse_table
from dynod.router.watcher import TableWatcher


def _doc(apps: dict[str, Any], version: Any = 7) -> bytes:
    return json.dumps({"version": version, "apps": apps}).encode()


GOOD = {
    "hosts": ["MyApp.localhost", "www.example.test"],
    "state": "running",
    "dynos": [{"name": "web.1", "addr": "10.217.0.5", "port": 5000}],
}


def test_a_valid_table_indexes_apps_by_lowercase_host() -> None:
    table = parse_table(_doc({"myapp": GOOD}))
    assert table.version == 7
    app = table.lookup("myapp.localhost")
    assert app is not None and app is table.lookup("www.example.test")
    assert app.state is AppState.RUNNING
    assert [(d.name, d.key) for d in app.dynos] == [("web.1", ("10.217.0.5", 5000))]
    assert table.lookup("MyApp.localhost") is None  # callers pass lower case
    assert table.rejected == ()


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"[]", _doc({}, version="7"), _doc({}, version=True),
     b'{"version": 1, "apps": []}', b'{"version": 1}'],
)  # fmt: skip
def test_an_unusable_document_is_rejected_whole(raw: bytes) -> None:
    with pytest.raises(RouteTableError):
        parse_table(raw)


@pytest.mark.parametrize(
    "entry",
    [
        "running",
        {**GOOD, "hosts": "myapp.localhost"},
        {**GOOD, "hosts": [""]},
        {**GOOD, "state": "sleeping"},
        {**GOOD, "dynos": {"name": "web.1"}},
        {**GOOD, "dynos": [{"name": "web.1", "addr": "myhost", "port": 5000}]},
        {**GOOD, "dynos": [{"name": "web.1", "addr": 167772161, "port": 5000}]},
        {**GOOD, "dynos": [{"name": "web.1", "addr": "10.0.0.1", "port": 0}]},
        {**GOOD, "dynos": [{"name": "web.1", "addr": "10.0.0.1", "port": True}]},
        {**GOOD, "dynos": [{"addr": "10.0.0.1", "port": 5000}]},
        {**GOOD, "preboot": {"name": "web.2"}},
        {**GOOD, "preboot": [{"name": "web.2", "addr": "x", "port": 5000}]},
    ],
)
def test_a_bad_app_entry_drops_only_that_app(entry: Any) -> None:
    other = {"hosts": ["other.localhost"], "state": "no-web", "dynos": []}
    table = parse_table(_doc({"bad": entry, "other": other}))
    assert list(table.apps) == ["other"]
    assert len(table.rejected) == 1 and "'bad'" in table.rejected[0]


def test_preboot_dynos_are_found_only_by_name_for_checks() -> None:
    entry = {**GOOD, "preboot": [{"name": "web.2", "addr": "10.0.0.9", "port": 80}]}
    raw = json.dumps({"version": 1, "check_token": "abc123", "apps": {"a": entry}})
    table = parse_table(raw.encode())
    app = table.lookup("myapp.localhost")
    assert app is not None and table.check_token == b"abc123"
    assert [d.name for d in app.dynos] == ["web.1"]
    found = app.checked("web.2")
    assert found is not None and found.key == ("10.0.0.9", 80)
    assert app.checked("web.1") is app.dynos[0]
    assert app.checked("web.3") is None
    assert parse_table(_doc({"a": GOOD})).check_token == b""


@pytest.mark.parametrize("token", [7, "with space", "x" * 129])
def test_a_bad_check_token_rejects_the_table(token: Any) -> None:
    raw = json.dumps({"version": 1, "check_token": token, "apps": {}})
    with pytest.raises(RouteTableError):
        parse_table(raw.encode())


def test_a_host_claimed_twice_keeps_the_first_app() -> None:
    second = {**GOOD, "hosts": ["second.localhost", "myapp.localhost"]}
    table = parse_table(_doc({"first": GOOD, "second": second}))
    assert list(table.apps) == ["first"]
    assert table.lookup("second.localhost") is None
    assert "myapp.localhost" in table.rejected[0]


def test_watcher_hands_over_new_tables_and_skips_bad_ones(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    seen: list[int] = []
    watcher = TableWatcher(path, lambda t: seen.append(t.version), interval=1.0)

    def write(data: bytes) -> None:
        tmp = tmp_path / "tmp"
        tmp.write_bytes(data)
        tmp.rename(path)

    assert watcher.check() is False  # no file yet
    write(_doc({"a": GOOD}, version=1))
    assert watcher.check() is True
    assert watcher.check() is False  # unchanged
    write(b"{broken")
    assert watcher.check() is False
    write(_doc({"a": GOOD}, version=2))
    assert watcher.check() is True
    path.unlink()
    assert watcher.check() is False  # a vanished file keeps the last table
    assert seen == [1, 2]
