"""The ``websockets`` server with its ``broadcast()``: a peer of ``bench_socket_hub.py``.

The idiom of the library's own broadcast guide: a set of connections per room,
``websockets.asyncio.server.broadcast(members, data)`` writes the frame to each
connection without waiting (no task per delivery, no queue). No
authentication, no history: the bare stack, on uvloop::

    python bench/_ws_peer_websockets.py PORT

Frames as the bare Quart peer's (``_ws_peer_quart``). Prints ``peer listening
on`` to stderr once it accepts connections.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

__all__ = ["main", "run"]


async def run(port: int) -> None:
    """Serve on ``127.0.0.1:port`` until cancelled."""
    rooms: dict[str, set[ServerConnection]] = {}

    async def handler(connection: ServerConnection) -> None:
        joined: list[str] = []
        try:
            async for raw in connection:
                frame: dict[str, Any] = json.loads(raw)
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
                    broadcast(rooms.get(frame["room"], ()), data)
                elif kind == "ping":
                    await connection.send(
                        json.dumps({"type": "pong", "ref": frame.get("ref"), "ts": time.time()})
                    )
                elif kind == "join_room":
                    rooms.setdefault(frame["room"], set()).add(connection)
                    joined.append(frame["room"])
                    await connection.send(
                        json.dumps(
                            {"type": "room_joined", "room": frame["room"], "ref": frame.get("ref")}
                        )
                    )
        finally:
            for room in joined:
                members = rooms.get(room)
                if members is not None:
                    members.discard(connection)
                    if not members:
                        del rooms[room]

    # compression=None: the client offers none either (as for every contender).
    async with serve(handler, "127.0.0.1", port, compression=None):
        print(f"peer listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        await asyncio.Future()


def main() -> None:
    """``python bench/_ws_peer_websockets.py PORT``."""
    uvloop.run(run(int(sys.argv[1])))


if __name__ == "__main__":
    main()
