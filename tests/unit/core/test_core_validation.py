import pytest

from dynod import validation
from dynod.errors import InvalidConfig, InvalidFormation, InvalidName


@pytest.mark.parametrize("name", ["abc", "my-app-2", "a" * 30])
def test_good_app_names(name: str) -> None:
    assert validation.app_name(name) == name


@pytest.mark.parametrize(
    "name", ["ab", "Abc", "1abc", "abc-", "a" * 31, "my_app", "", None, 5]
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
    assert validation.size("Standard-2X") == "standard-2x"
    with pytest.raises(InvalidFormation, match="choose one of"):
        validation.size("huge")
    assert validation.quantity(0) == 0
    for bad in (-1, 101, "3", True, 1.5):
        with pytest.raises(InvalidFormation):
            validation.quantity(bad)
