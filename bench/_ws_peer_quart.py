"""The bare Quart/Hypercorn broadcast loop: a peer of ``bench_socket_hub.py``.

The idiom of Quart's own broadcast example: each connection gets an
``asyncio.Queue`` and a sender task that writes it out; a broadcast encodes its
JSON once and puts the same string on every member's queue. No
authentication, no history, no limits: the bare stack. Served by Hypercorn's
own CLI on its uvloop worker, in process::

    python -m hypercorn --worker-class uvloop --workers 0 --bind 127.0.0.1:PORT \
        '_ws_peer_quart:quart_app()'

Frames (JSON text, the hub's shapes): ``join_room {room, ref}`` ->
``room_joined {room, ref}``; ``send_message {room, message}`` -> every member
gets ``new_message {room, message, ts}``; ``ping {ref}`` -> ``pong {ref, ts}``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from quart import Quart, websocket

__all__ = ["quart_app"]


def quart_app() -> Quart:
    """The peer's app (Hypercorn calls this factory)."""
    app = Quart("bare-ws")
    rooms: dict[str, set[asyncio.Queue[str]]] = {}

    @app.websocket("/ws")
    async def ws() -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()
        joined: list[str] = []

        async def sender() -> None:
            while True:
                await websocket.send(await queue.get())

        task = asyncio.ensure_future(sender())
        try:
            while True:
                frame: dict[str, Any] = json.loads(await websocket.receive())
                kind = frame.get("type")
                if kind == "send_message":
                    data = json.dumps(
                        {
                            "type": "new_message",
                            "room": frame["room"],
                            "message": frame["message"],
                            "ts": time.time(),
                        }
                    )
                    for member in rooms.get(frame["room"], ()):
                        member.put_nowait(data)
                elif kind == "ping":
                    queue.put_nowait(
                        json.dumps({"type": "pong", "ref": frame.get("ref"), "ts": time.time()})
                    )
                elif kind == "join_room":
                    rooms.setdefault(frame["room"], set()).add(queue)
                    joined.append(frame["room"])
                    queue.put_nowait(
                        json.dumps(
                            {"type": "room_joined", "room": frame["room"], "ref": frame.get("ref")}
                        )
                    )
        finally:
            task.cancel()
            for room in joined:
                members = rooms.get(room)
                if members is not None:
                    members.discard(queue)
                    if not members:
                        del rooms[room]

    return app
