"""The session writer sends through Quart's ASGI callable, and batches through Hypercorn."""

from __future__ import annotations

import json

import pytest
from quart import Blueprint, websocket
from websockets.asyncio.client import connect

from runtime import NodeSetup, Settings
from runtime._drain import RequestDrain
from runtime._websocket import _asgi_send
from runtime._ws_batch import batch_writer
from runtime.testing import open_app, serve_app


@pytest.mark.parametrize("drained", [False, True], ids=["bare-app", "behind-the-drain"])
async def test_the_writer_finds_the_asgi_send_and_the_stream_behind_quarts_websocket(
    drained: bool,
) -> None:
    found: list[bool] = []
    batched: list[bool] = []
    routes = Blueprint("probe", __name__)

    @routes.websocket("/probe")
    async def probe() -> None:
        await websocket.accept()
        send = _asgi_send(websocket._get_current_object())  # type: ignore[attr-defined]
        found.append(send is not None)
        assert send is not None
        await send({"type": "websocket.send", "bytes": None, "text": '{"ok": true}'})
        write_many = batch_writer(send)
        batched.append(write_many is not None)
        assert write_many is not None
        assert await write_many(['{"n": 1}', '{"n": 2}'])  # two frames, one write
        await websocket.receive()

    def compose(node: NodeSetup) -> None:
        node.add_blueprint(routes)

    async with open_app(Settings(), compose=compose) as (app, _):
        served = RequestDrain(app) if drained else app  # run_node serves the node through it
        async with (
            serve_app(served) as url,  # type: ignore[arg-type]
            connect(url.replace("http", "ws") + "/probe") as socket,
        ):
            assert json.loads(await socket.recv()) == {"ok": True}
            assert [json.loads(await socket.recv()) for _ in range(2)] == [{"n": 1}, {"n": 2}]
    assert found == batched == [True]


def test_without_the_partial_the_writer_falls_back_to_websocket_send() -> None:
    class Plain:
        async def _send(self, data: str) -> None: ...

    assert _asgi_send(Plain()) is None
    assert _asgi_send(object()) is None
    assert batch_writer(None) is None
    assert batch_writer(Plain()._send) is None  # type: ignore[arg-type]
