import pytest

from dynod import validation
from dynod.errors import InvalidConfig, InvalidFormation, InvalidName, UserInputError
from dynod.runtime.spec import SIZES
from dynod.state.records import AppSettings


@pytest.mark.parametrize("name", ["abc", "my-app-2", "a" * 30])
def test_good_app_names(name: str) -> None:
    assert validation.app_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["ab", "Abc", "1abc", "abc-", "a" * 31, "my_app", "", None, 5, "abc\n", "\nabc"],
)
def test_bad_app_names(name: object) -> None:
    with pytest.raises(InvalidName, match="invalid"):
        validation.app_name(name)


def test_config_changes_set_and_unset() -> None:
    new = validation.config_changes({"B": "2", "A": None}, {"A": "1"})
    assert new == {"B": "2"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"1A": "x"}, "invalid"),
        ({"A-B": "x"}, "invalid"),
        ({"FOO\n": "x"}, "invalid"),
        ({"DYNOD_X": "x"}, "reserved"),
        ({"A": 5}, "string or null"),
        ("A=1", "JSON object"),
        ({"A": "x" * 70000}, "limit"),
    ],
)
def test_config_changes_rejected(changes: object, message: str) -> None:
    current = {"KEEP": "1"}
    with pytest.raises(InvalidConfig, match=message):
        validation.config_changes(changes, current)
    assert current == {"KEEP": "1"}


def test_sizes_and_quantities() -> None:
    assert validation.size("Standard-2X", SIZES) == "standard-2x"
    with pytest.raises(InvalidFormation, match="choose one of"):
        validation.size("huge", SIZES)
    assert validation.quantity(0) == 0
    for bad in (-1, 101, "3", True, 1.5):
        with pytest.raises(InvalidFormation):
            validation.quantity(bad)


def test_settings_changes_apply_to_the_current_settings() -> None:
    current = AppSettings(boot_timeout=90)
    new = validation.settings_changes(
        {"health_path": "/up?full=1", "worker_surge": 3}, current
    )
    assert new == AppSettings(boot_timeout=90, health_path="/up?full=1", worker_surge=3)
    cleared = validation.settings_changes({"health_path": ""}, new)
    assert cleared.health_path == ""


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ([], "JSON object"),
        ({}, "JSON object"),
        ({"boot": 5}, "Unknown settings boot"),
        ({"boot_timeout": 0}, "from 1 to 3600"),
        ({"stop_timeout": True}, "from 1 to 3600"),
        ({"worker_surge": 1.5}, "whole number"),
        ({"worker_surge": 101}, "whole number"),
        ({"health_path": "health"}, "starting with '/'"),
        ({"health_path": "/a b"}, "starting with '/'"),
        ({"health_path": 5}, "starting with '/'"),
        ({"health_path": "/up\n"}, "starting with '/'"),
    ],
)
def test_settings_changes_rejected(changes: object, message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        validation.settings_changes(changes, AppSettings())


def test_process_types_end_where_the_name_ends() -> None:
    assert validation.process_type("web-2") == "web-2"
    for bad in ("web\n", "web ", "", "w" * 64):
        with pytest.raises(InvalidFormation, match="invalid"):
            validation.process_type(bad)
