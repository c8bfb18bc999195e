"""Reading a health check's answer."""

from __future__ import annotations

import pytest

from dynod.manager.health import parse_status, passed


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 200),
        (b"HTTP/1.0 302 Found\r\n\r\n", 302),
        (b"HTTP/1.1 503\r\n\r\n", 503),
        (b"SSH-2.0-OpenSSH\r\n\r\n", None),
        (b"HTTP/1.1 abc OK\r\n\r\n", None),
        (b"", None),
    ],
)
def test_status_line_is_parsed(head: bytes, status: int | None) -> None:
    assert parse_status(head) == status


def test_2xx_and_3xx_pass() -> None:
    assert [passed(s) for s in (None, 199, 200, 301, 399, 400, 503)] == [
        False, False, True, True, True, False, False,
    ]  # fmt: skip
