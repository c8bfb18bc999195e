"""Parsing of ps:scale, ps:type, config:set, settings and release versions."""

from __future__ import annotations

import click
import pytest

from dynod.cli.parsing import (
    ScaleChange,
    needs_formation,
    parse_assignments,
    parse_keys,
    parse_scale,
    parse_scale_arg,
    parse_settings,
    parse_types,
    parse_version,
    scale_updates,
)
from dynod.errors import InvalidFormation


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("web=3", ScaleChange("web", "=", 3, None)),
        ("web=0", ScaleChange("web", "=", 0, None)),
        ("worker=1:standard-2x", ScaleChange("worker", "=", 1, "standard-2x")),
        ("web=2:Standard-2X", ScaleChange("web", "=", 2, "standard-2x")),
        ("web+1", ScaleChange("web", "+", 1, None)),
        ("worker-1", ScaleChange("worker", "-", 1, None)),
        ("web+2:performance-m", ScaleChange("web", "+", 2, "performance-m")),
        ("my-worker-1", ScaleChange("my-worker", "-", 1, None)),
        ("my-worker=10", ScaleChange("my-worker", "=", 10, None)),
        ("clock_2=1", ScaleChange("clock_2", "=", 1, None)),
    ],
)
def test_scale_forms(arg: str, expected: ScaleChange) -> None:
    assert parse_scale_arg(arg) == expected


@pytest.mark.parametrize(
    "arg",
    [
        "web",
        "web=",
        "=3",
        "web=-1",
        "web=x",
        "web=3:",
        "web==3",
        "web=3:a b",
        "web 3",
        "",
    ],
)
def test_bad_scale_is_usage_error_naming_it(arg: str) -> None:
    with pytest.raises(click.BadParameter) as info:
        parse_scale_arg(arg)
    assert repr(arg) in info.value.message


def test_type_named_twice_is_usage_error() -> None:
    with pytest.raises(click.BadParameter, match="'web\\+1' names process type 'web'"):
        parse_scale(["web=2", "web+1"])


def test_absolute_updates_need_no_formation() -> None:
    changes = parse_scale(["web=3", "worker=1:standard-2x"])
    assert not needs_formation(changes)
    assert scale_updates(changes) == [
        {"type": "web", "quantity": 3},
        {"type": "worker", "quantity": 1, "size": "standard-2x"},
    ]


def test_relative_updates_use_current_quantities() -> None:
    changes = parse_scale(["web+1", "worker-1", "clock=0"])
    assert needs_formation(changes)
    updates = scale_updates(changes, {"web": 2, "worker": 1, "clock": 1})
    assert updates == [
        {"type": "web", "quantity": 3},
        {"type": "worker", "quantity": 0},
        {"type": "clock", "quantity": 0},
    ]


def test_relative_below_zero_is_refused() -> None:
    with pytest.raises(InvalidFormation, match=r"leave -1 dynos .*at most -2"):
        scale_updates(parse_scale(["web-3"]), {"web": 2})


def test_relative_on_unknown_type_is_refused() -> None:
    with pytest.raises(InvalidFormation, match=r"no process type 'wrker'.*web, worker"):
        scale_updates(parse_scale(["wrker+1"]), {"web": 1, "worker": 0})


def test_ps_type_arguments() -> None:
    assert parse_types(["web=standard-2X", "worker=eco"]) == [
        {"type": "web", "size": "standard-2x"},
        {"type": "worker", "size": "eco"},
    ]
    for bad in ("web", "web=", "=eco", "we b=eco"):
        with pytest.raises(click.BadParameter):
            parse_types([bad])


def test_config_values_keep_every_equals_sign() -> None:
    parsed = parse_assignments(
        ["A=1", "QUERY=a=1&b=2", "EMPTY=", "MULTI=x\ny", "_X=="], hint="x"
    )
    assert parsed == {
        "A": "1",
        "QUERY": "a=1&b=2",
        "EMPTY": "",
        "MULTI": "x\ny",
        "_X": "=",
    }


@pytest.mark.parametrize("arg", ["NOEQUALS", "=value", "1ABC=x", "BAD-KEY=x", "A B=c"])
def test_bad_config_assignment_names_it(arg: str) -> None:
    with pytest.raises(click.BadParameter) as info:
        parse_assignments([arg], hint="'KEY=VALUE'")
    assert repr(arg) in info.value.message


def test_config_keys() -> None:
    assert parse_keys(["A", "B_2"], hint="k") == ["A", "B_2"]
    with pytest.raises(click.BadParameter, match="'2A'"):
        parse_keys(["A", "2A"], hint="k")


def test_settings() -> None:
    assert parse_settings(["boot_timeout=120", "stop_timeout=5"]) == {
        "boot_timeout": 120,
        "stop_timeout": 5,
    }
    for bad in ("boot_timeout", "boot_timeout=0", "boot_timeout=1.5", "x=3", "stop=3"):
        with pytest.raises(click.BadParameter, match=repr(bad)):
            parse_settings([bad])


def test_versions() -> None:
    assert parse_version("v12") == 12
    assert parse_version("V3") == 3
    assert parse_version("7") == 7
    for bad in ("v", "vv1", "1.0", "latest"):
        with pytest.raises(click.BadParameter):
            parse_version(bad)
