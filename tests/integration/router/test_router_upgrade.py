"""WebSockets and any other ``Upgrade``: after a 101, bytes flow both ways."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web
from router_harness import Router, app, read_logs, router

pytestmark = pytest.mark.integration
__all__ = ["router"]


class UpgradeDyno:
    """Switches to a protocol that upper-cases what it gets, if asked to;
    answers 200 to anything else.  ``heads`` records the request heads."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.closed_by_peer = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            self.heads.append(head)
            if b"\r\nupgrade: shout" not in head.lower():
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno")
                return
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: shout\r\n"
                b"Connection: Upgrade\r\n\r\n" + rest.upper()
            )
            while chunk := conn.recv(65536):
                if chunk == b"bye":
                    conn.close()
                    return
                conn.sendall(chunk.upper())
        except OSError:
            return
        # The router closed its side: the client is gone.
        self.closed_by_peer.set()

    def close(self) -> None:
        self.sock.close()
        for conn in self._conns:
            conn.close()


@pytest.fixture
def dyno() -> Iterator[UpgradeDyno]:
    d = UpgradeDyno()
    yield d
    d.close()


def _read_until(s: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


_UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: up.localhost\r\nConnection: keep-alive, Upgrade\r\n"
    b"Upgrade: shout\r\n\r\n"
)


def test_upgraded_connection_relays_both_ways_until_a_side_closes(
    router: Router, dyno: UpgradeDyno
) -> None:
    router.write_routes(
        {"up": app(["up.localhost"], dynos=[{"name": "web.1", "addr": "127.0.0.1",
                                             "port": dyno.port}])}
    )  # fmt: skip
    logs = router.log_socket()
    router.start(workers=1)

    # Bytes sent right behind the head wait for the 101, then go through.
    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
        s.sendall(_UPGRADE + b"early")
        data = _read_until(s, b"EARLY")
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert b"\r\nUpgrade: shout" in head and b"\r\nConnection: Upgrade" in head
        assert body == b"EARLY"
        assert b"\r\nupgrade: shout" in dyno.heads[0].lower()
        for word in (b"hello", b"x" * 200_000):
            s.sendall(word)
            got = b""
            while len(got) < len(word):
                got += s.recv(65536)
            assert got == word.upper()

    # The client's close reaches the dyno; the log has one line with status 101.
    assert dyno.closed_by_peer.wait(5)
    [(_, line)] = read_logs(logs, 1)
    assert "status=101" in line and "at=info" in line

    # The dyno's close reaches the client.
    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
        s.sendall(_UPGRADE)
        _read_until(s, b"\r\n\r\n")
        s.sendall(b"bye")
        assert _read_until(s, b"never") == b""


def test_declined_upgrade_is_a_normal_response_then_a_close(
    router: Router, dyno: UpgradeDyno
) -> None:
    router.write_routes(
        {"up": app(["up.localhost"], dynos=[{"name": "web.1", "addr": "127.0.0.1",
                                             "port": dyno.port}])}
    )  # fmt: skip
    router.start(workers=1)

    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
        s.sendall(_UPGRADE.replace(b"shout", b"other"))
        data = _read_until(s, b"never")
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close\r\n" in data and data.endswith(b"no")


async def test_websocket_messages_go_both_ways_and_the_close_is_clean(
    router: Router,
) -> None:
    # The dyno: aiohttp's WebSocket server, greeting first, then answering
    # each text message upper-cased and each binary one reversed.
    seen: dict[str, str] = {}
    closed = asyncio.Event()
    close_codes: list[int | None] = []

    async def handle(request: web.Request) -> web.WebSocketResponse:
        seen.update(request.headers)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("hello from web.1")
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                await ws.send_str(msg.data.upper())
            elif msg.type is aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
        close_codes.append(ws.close_code)
        closed.set()
        return ws

    web_app = web.Application()
    web_app.router.add_get("/ws", handle)
    runner = web.AppRunner(web_app)
    await runner.setup()
    listener = socket.create_server(("127.0.0.1", 0))
    await web.SockSite(runner, listener).start()
    try:
        port = listener.getsockname()[1]
        dyno = {"name": "web.1", "addr": "127.0.0.1", "port": port}
        router.write_routes({"ws": app(["ws.localhost"], dynos=[dyno])})
        logs = router.log_socket()
        router.start(workers=1)

        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(
                f"http://127.0.0.1:{router.port}/ws?room=1",
                headers={"Host": "ws.localhost"},
                timeout=aiohttp.ClientWSTimeout(ws_receive=10),
            ) as ws,
        ):
            assert await ws.receive_str() == "hello from web.1"
            for text in ("hello", "héllo ✓", "x" * 70_000):
                await ws.send_str(text)
                assert await ws.receive_str() == text.upper()
            for data in (b"\x00\x01\xff", bytes(range(256)) * 4096):
                await ws.send_bytes(data)
                assert await ws.receive_bytes() == data[::-1]
            assert await ws.close()
            assert ws.close_code == aiohttp.WSCloseCode.OK

        # The dyno saw the handshake and the clean close.
        await asyncio.wait_for(closed.wait(), 5)
        assert close_codes == [aiohttp.WSCloseCode.OK]
        assert seen["Upgrade"].lower() == "websocket"
        assert "Sec-WebSocket-Key" in seen and seen["X-Forwarded-Proto"] == "http"
    finally:
        await runner.cleanup()
        listener.close()

    [(_, line)] = await asyncio.to_thread(read_logs, logs, 1)
    assert 'path="/ws?room=1"' in line and "status=101" in line
