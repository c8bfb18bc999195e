"""dynod.toml: defaults, the file, then flags; sizes as tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynod import config
from dynod.errors import UserInputError
from dynod.runtime.spec import MB, SIZES, Size


def load(tmp_path: Path, text: str, **flags: object) -> config.Config:
    path = tmp_path / "dynod.toml"
    path.write_text(text)
    return config.load(path, **flags)


def test_file_then_flags_over_the_defaults(tmp_path: Path) -> None:
    c = load(
        tmp_path,
        'http_port = 8080\ninstance = "one"\nbuild_timeout = 60\n',
        instance="two",
        state_dir=tmp_path / "state",
    )
    assert (c.http_port, c.instance, c.https_port) == (8080, "two", 443)
    assert (c.build_timeout, c.state_dir) == (60, tmp_path / "state")
    assert c.sizes == SIZES
    assert config.load(tmp_path / "missing.toml").state_dir == Path("/var/lib/dynod")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("htp_port = 1\n", r"Unknown setting\(s\) htp_port"),
        ('instance = "Has-Caps"\n', "Instance name 'Has-Caps' is invalid"),
        ('dyno_subnet = "10.1.2.0/30"\n', "too small"),
        ('dyno_subnet = "10.1.2.3/24"\n', "Dyno subnet '10.1.2.3/24' is invalid"),
        ('http_port = "80"\n', "http_port = '80' is invalid: use a whole number"),
        ("release_timeout = true\n", "release_timeout = True is invalid: use a number"),
        ("state_dir = 5\n", "state_dir = 5 is invalid: use a string"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        load(tmp_path, text)


def test_sizes_are_changed_and_added_by_tables(tmp_path: Path) -> None:
    c = load(
        tmp_path,
        "[sizes.standard-1x]\nmemory_mb = 768\n"
        "[sizes.tiny]\nmemory_mb = 128\npids = 64\ncpu_shares = 1\ncpu_quota = 0.5\n",
    )
    assert c.sizes["standard-1x"] == Size("standard-1x", 768 * MB, 256, 1)
    assert c.sizes["tiny"] == Size("tiny", 128 * MB, 64, 1, cpu_quota=0.5)
    # Every other size is Heroku's, and the module's table is untouched.
    assert c.sizes["performance-l"] == SIZES["performance-l"]
    assert SIZES["standard-1x"].memory_bytes == 512 * MB


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sizes.tiny]\nmemory_mb = 128\n", r"\[sizes.tiny\] is a new size and needs"),
        ("[sizes.standard-1x]\nmemory = 1\n", "unknown setting"),
        ("[sizes.standard-1x]\npids = 0\n", "pids = 0 is invalid"),
        ("[sizes.standard-1x]\npids = 1.5\n", "whole number"),
        ('[sizes.standard-1x]\ncpu_quota = "a lot"\n', "not a number"),
        ("[sizes.Big_One]\npids = 1\n", "Size name 'Big_One' is invalid"),
        ("sizes = 3\n", "must be tables"),
    ],
)
def test_bad_sizes_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        load(tmp_path, text)


def test_each_instance_hands_out_uids_of_its_own(tmp_path: Path) -> None:
    default = load(tmp_path, "")
    assert default.app_uid(0) == 200000 and default.app_uid(7) == 200007
    blocks = {load(tmp_path, f'instance = "{n}"\n').app_uid(0) for n in ("a1", "b2")}
    assert len(blocks) == 2 and all(b >= 200000 + 65536 for b in blocks)
    assert all((b - 200000) % 65536 == 0 for b in blocks)
    assert load(tmp_path, 'instance = "a1"\nuid_base = 5000\n').app_uid(3) == 5003
    with pytest.raises(UserInputError, match="uid_base 10 is invalid"):
        load(tmp_path, "uid_base = 10\n")
