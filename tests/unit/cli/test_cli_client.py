"""The API client: endpoints, errors, streaming and the bearer token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_fakeapi import Dynoctl, FakeApi
from click.testing import CliRunner

from dynod.cli.client import ApiError, ApiUnreachable, Client, Endpoint
from dynod.cli.main import cli
from dynod.errors import UserInputError


def test_endpoint_forms() -> None:
    unix = Endpoint.parse("unix:/run/dynod/api.sock", "secret")
    assert unix.socket_path == "/run/dynod/api.sock"
    # A token is never sent over the local socket.
    assert unix.token is None
    tcp = Endpoint.parse("http://127.0.0.1:5000/", "secret")
    assert (tcp.base_url, tcp.socket_path, tcp.token) == (
        "http://127.0.0.1:5000",
        None,
        "secret",
    )
    for bad in ("unix:", "/run/dynod/api.sock", "ftp://x", "http://"):
        with pytest.raises(UserInputError, match="DYNOD_API"):
            Endpoint.parse(bad)


def test_urls_handed_out_by_the_api_keep_only_their_path() -> None:
    client = Client(Endpoint.parse("unix:/x.sock"))
    try:
        assert client.url("/apps/a") == "http://localhost/apps/a"
        assert (
            client.url("http://10.0.0.1:80/streams/b1?x=1")
            == "http://localhost/streams/b1?x=1"
        )
    finally:
        client.close()


@pytest.fixture
def client(fake: FakeApi) -> Iterator[Client]:
    c = Client(Endpoint.parse(fake.url))
    yield c
    c.close()


def test_request_sends_json_and_decodes_answer(fake: FakeApi, client: Client) -> None:
    fake.reply("PATCH", "/apps/a/config-vars", {"A": "1"})
    assert client.request("PATCH", "/apps/a/config-vars", {"A": "1", "B": None}) == {
        "A": "1"
    }
    (seen,) = fake.sent()
    assert seen.json() == {"A": "1", "B": None}
    assert seen.headers["Content-Type"] == "application/json"
    assert "Authorization" not in seen.headers


def test_error_answer_carries_server_message(fake: FakeApi, client: Client) -> None:
    fake.fail("GET", "/apps/nope", 404, "not_found", "Couldn't find that app.")
    with pytest.raises(ApiError) as info:
        client.request("GET", "/apps/nope")
    assert str(info.value) == "Couldn't find that app."
    assert (info.value.status, info.value.error_id) == (404, "not_found")


def test_error_without_json_names_status(fake: FakeApi, client: Client) -> None:
    fake.reply("GET", "/boom", None, 502, chunks=[b"<html>bad gateway</html>"])
    with pytest.raises(ApiError, match="answered 502 Bad Gateway to GET /boom"):
        client.request("GET", "/boom")


def test_stream_lines_joins_split_chunks(fake: FakeApi, client: Client) -> None:
    fake.reply("GET", "/s", chunks=[b"one\ntw", b"o\n", b"thr\xc3", b"\xa9e"])
    assert list(client.stream_lines("/s", params={"tail": False})) == [
        "one",
        "two",
        "thrée",
    ]
    assert fake.sent()[0].query == {"tail": "false"}


def test_missing_socket_says_how_to_start_dynod(api_dir: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["apps"],
        env={"DYNOD_API": f"unix:{api_dir}/none.sock", "NO_COLOR": "1"},
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(" !    Cannot reach the dynod API at unix:")
    assert "$DYNOD_API" in result.stderr
    assert "systemctl start dynod" in result.stderr
    assert "dynod serve" in result.stderr


def test_refused_tcp_connection_says_how_to_start_dynod() -> None:
    import socket

    # A port that was free a moment ago refuses connections.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = CliRunner().invoke(
        cli, ["apps"], env={"DYNOD_API": f"http://127.0.0.1:{port}"}
    )
    assert result.exit_code == 1
    assert "connection refused" in result.stderr
    assert "dynod serve" in result.stderr


def test_bad_api_setting_is_reported(dynoctl: Dynoctl) -> None:
    result = dynoctl("apps", DYNOD_API="localhost:5000")
    assert result.exit_code == 1
    assert "$DYNOD_API is 'localhost:5000'" in result.stderr


def test_tcp_endpoint_sends_bearer_token() -> None:
    fake = FakeApi()
    url = fake.start()
    try:
        fake.reply("GET", "/apps", [])
        result = CliRunner().invoke(
            cli, ["apps", "--json"], env={"DYNOD_API": url, "DYNOD_API_TOKEN": "t0k"}
        )
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == "[]"
        assert fake.sent()[0].headers["Authorization"] == "Bearer t0k"
    finally:
        fake.stop()


def test_unreachable_is_a_dynod_error() -> None:
    from dynod.errors import DynodError

    assert issubclass(ApiUnreachable, DynodError)
    assert issubclass(ApiError, DynodError)
