"""run over the attach WebSocket (the non-terminal path) and run:detached."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from aiohttp import web
from cli_fakeapi import Dynoctl, FakeApi

ATTACH = "/apps/hello/dynos/run.4821/attach"
DYNO = {
    "id": "d1",
    "name": "run.4821",
    "type": "run",
    "state": "starting",
    "size": "standard-1x",
    "command": "cat",
    "attach_url": f"http://127.0.0.1:9{ATTACH}",
}


def serve_echo(fake: FakeApi, exit_status: int | None) -> list[Any]:
    """An attach endpoint that echoes stdin and exits with ``exit_status`` at EOF.

    Returns the list of frames it receives (bytes, or decoded text frames).
    """
    frames: list[Any] = []

    async def attach(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_bytes(b"dyno says hi\n")
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                frames.append(msg.data)
                await ws.send_bytes(msg.data)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                control = json.loads(msg.data)
                frames.append(control)
                if control.get("eof"):
                    break
        if exit_status is not None:
            await ws.send_str(json.dumps({"exit_status": exit_status}))
        await ws.close()
        return ws

    fake.reply("POST", "/apps/hello/dynos", DYNO, 201)
    fake.on("GET", ATTACH, attach)
    return frames


def test_run_echoes_and_passes_exit_status(fake: FakeApi, dynoctl: Dynoctl) -> None:
    frames = serve_echo(fake, exit_status=3)
    result = dynoctl(
        "run", "-e", "DEBUG=1", "-e", "Q=a=b", "--", "cat", "-n", input="line one\n"
    )
    assert result.exit_code == 3, result.output
    assert result.stdout == "dyno says hi\nline one\n"
    assert result.stderr == "Running `cat -n` on ⬢ hello... starting, run.4821\n"
    # stdin went up as binary frames, then its end; no terminal, no resize.
    assert frames == [b"line one\n", {"eof": True}]
    post = fake.sent("POST")[0]
    assert post.json() == {
        "command": "cat -n",
        "attach": True,
        "env": {"DEBUG": "1", "Q": "a=b"},
        "tty": False,
    }


def test_run_zero_exit_and_size_and_single_word_command(
    fake: FakeApi, dynoctl: Dynoctl
) -> None:
    serve_echo(fake, exit_status=0)
    result = dynoctl("run", "--size", "Standard-2X", "echo $HOME && ls", input="")
    assert result.exit_code == 0, result.output
    body = fake.sent("POST")[0].json()
    # One word is the command as written, for the dyno's shell to expand.
    assert body["command"] == "echo $HOME && ls"
    assert body["size"] == "standard-2x"


def test_run_options_stop_at_the_command(fake: FakeApi, dynoctl: Dynoctl) -> None:
    serve_echo(fake, exit_status=0)
    result = dynoctl("run", "ls", "-la", input="")
    assert result.exit_code == 0, result.output
    assert fake.sent("POST")[0].json()["command"] == "ls -la"


def test_run_without_exit_status_fails(fake: FakeApi, dynoctl: Dynoctl) -> None:
    serve_echo(fake, exit_status=None)
    result = dynoctl("run", "--", "cat", input="x")
    assert result.exit_code == 1
    assert "closed before it reported an exit status" in result.stderr


def test_run_refused(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.fail(
        "POST",
        "/apps/hello/dynos",
        409,
        "conflict",
        "No release to run yet; deploy first.",
    )
    result = dynoctl("run", "--", "bash", input="")
    assert result.exit_code == 1
    assert result.stderr.endswith(" !    No release to run yet; deploy first.\n")


def test_run_needs_a_command(dynoctl: Dynoctl) -> None:
    assert dynoctl("run").exit_code == 2
    assert dynoctl("run", "-e", "NOEQUALS", "--", "ls").exit_code == 2


def test_run_detached(fake: FakeApi, dynoctl: Dynoctl) -> None:
    fake.reply("POST", "/apps/hello/dynos", dict(DYNO, attach_url=None), 201)
    result = dynoctl("run:detached", "--", "python", "cleanup.py")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        "Running `python cleanup.py` on ⬢ hello... done, run.4821 (standard-1x)",
        "Run `dynoctl logs -a hello -d run.4821` to see its output.",
    ]
    assert fake.sent("POST")[0].json() == {
        "command": "python cleanup.py",
        "attach": False,
        "env": {},
    }
