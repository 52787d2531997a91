"""python-socketio's ``AsyncServer`` as an ASGI app on uvicorn: a peer of ``bench_socket_hub.py``.

The stack python-socketio documents for asyncio: ``socketio.AsyncServer
(async_mode="asgi")`` wrapped in ``socketio.ASGIApp``, served by uvicorn with
its fast parts (``--loop uvloop --http httptools``) and its
``websockets-sansio`` WebSocket implementation (a little faster here than the
deprecated ``websockets`` one: flood 16.0k against 14.8k deliveries/s), access
log off::

    python bench/_ws_peer_socketio.py PORT [WS]

``WS`` is uvicorn's ``--ws`` choice (default ``websockets-sansio``). Handlers run
inline (``async_handlers=False``: one client's events in order, no task per
event, the faster setting). Events: ``join_room(room)`` enters the room and
acks ``true``; ``send_message({room, message})`` emits ``new_message {room,
message, ts}`` to the room (python-socketio encodes the packet once per
broadcast); ``echo(data)`` acks ``{ref, ts}``. No authentication, no
recovery: the bare stack. Prints ``peer listening on`` to stderr once ready.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
from typing import Any

import uvloop

__all__ = ["main", "run"]


async def run(port: int, ws: str = "websockets-sansio") -> None:
    """Serve on ``127.0.0.1:port`` until the process is stopped."""
    # Imported by name: the bench extra brings them, and mypy runs without it.
    socketio: Any = importlib.import_module("socketio")
    uvicorn: Any = importlib.import_module("uvicorn")
    sio = socketio.AsyncServer(async_mode="asgi", async_handlers=False)

    async def join_room(sid: str, room: str) -> bool:
        await sio.enter_room(sid, room)
        return True

    async def send_message(sid: str, data: dict[str, Any]) -> None:
        payload = {"room": data["room"], "message": data["message"], "ts": time.time()}
        await sio.emit("new_message", payload, room=data["room"])

    async def echo(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"ref": data.get("ref"), "ts": time.time()}

    sio.on("join_room", join_room)
    sio.on("send_message", send_message)
    sio.on("echo", echo)
    config = uvicorn.Config(
        socketio.ASGIApp(sio),
        host="127.0.0.1",
        port=port,
        loop="none",  # uvloop is already running: uvloop.run below
        http="httptools",
        ws=ws,
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())  # handles SIGTERM/SIGINT itself
    while not server.started:
        if serving.done():
            await serving  # it failed to start: raise its error
            return
        await asyncio.sleep(0.02)
    print(f"peer listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    await serving


def main() -> None:
    """``python bench/_ws_peer_socketio.py PORT [WS]``."""
    ws = sys.argv[2] if len(sys.argv) > 2 else "websockets-sansio"
    uvloop.run(run(int(sys.argv[1]), ws))


if __name__ == "__main__":
    main()
