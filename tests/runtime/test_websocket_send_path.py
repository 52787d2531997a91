"""The session writer sends through Quart's ASGI callable, not ``websocket.send``."""

from __future__ import annotations

import json

from quart import Blueprint, websocket
from websockets.asyncio.client import connect

from runtime import NodeSetup, Settings
from runtime._websocket import _asgi_send
from runtime.testing import open_app, serve_app


async def test_the_writer_finds_the_asgi_send_behind_quarts_websocket() -> None:
    found: list[bool] = []
    routes = Blueprint("probe", __name__)

    @routes.websocket("/probe")
    async def probe() -> None:
        await websocket.accept()
        send = _asgi_send(websocket._get_current_object())  # type: ignore[attr-defined]
        found.append(send is not None)
        assert send is not None
        await send({"type": "websocket.send", "bytes": None, "text": '{"ok": true}'})
        await websocket.receive()

    def compose(node: NodeSetup) -> None:
        node.add_blueprint(routes)

    async with (
        open_app(Settings(), compose=compose) as (app, _),
        serve_app(app) as url,
        connect(url.replace("http", "ws") + "/probe") as socket,
    ):
        assert json.loads(await socket.recv()) == {"ok": True}
    assert found == [True]


def test_without_the_partial_the_writer_falls_back_to_websocket_send() -> None:
    class Plain:
        async def _send(self, data: str) -> None: ...

    assert _asgi_send(Plain()) is None
    assert _asgi_send(object()) is None
