"""Writing many WebSocket frames in one transport write, when Hypercorn serves the socket.

Through ASGI every frame is one ``send`` call: Hypercorn frames it with
wsproto, then takes its stream's and its connection's send path (a lock, a
``write`` and a ``drain``) once per frame, some 30 µs here, which is what
bounds a broadcast to a thousand sockets. A session whose outbox holds several
frames can instead frame them all with the stream's wsproto connection and
hand Hypercorn one ``Data`` event: one trip down that path for the lot, the
same bytes on the wire.

This reaches into Hypercorn (0.18, pinned below 0.19 in ``pyproject.toml``):
:func:`batch_writer` finds the stream behind the ASGI ``send`` Quart holds
(through the node's request drain) and returns ``None`` whenever anything
does not look as expected, and the session then sends frame by frame through
ASGI. A test checks that the batch path is taken under the node's own stack.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from hypercorn.protocol.events import Data
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from wsproto.events import BytesMessage, TextMessage
from wsproto.utilities import LocalProtocolError

__all__ = ["BatchWriter", "batch_writer"]

logger = logging.getLogger("runtime.websocket")

BatchWriter = Callable[[Sequence[str | bytes]], Awaitable[bool]]
"""Writes frames in one go; ``False`` once the socket is closed (nothing more is written)."""

_UNWRAP_DEPTH = 4


def _stream_behind(send: object) -> WSStream | None:
    """The Hypercorn stream whose ``app_send`` ``send`` ends in, through bound-method wrappers."""
    for _ in range(_UNWRAP_DEPTH):
        owner = getattr(send, "__self__", None)
        if isinstance(owner, WSStream):
            return owner if getattr(send, "__name__", "") == "app_send" else None
        if owner is None:
            return None
        send = getattr(owner, "_send", None)  # the node's request drain keeps the server's send
    return None


def batch_writer(send: Callable[[dict[str, Any]], Awaitable[None]] | None) -> BatchWriter | None:
    """A writer of several frames at once for the socket behind ``send``, or ``None``."""
    stream = _stream_behind(send)
    if stream is None:
        return None

    async def write(frames: Sequence[str | bytes]) -> bool:
        if stream.closed or stream.state != ASGIWebsocketState.CONNECTED:
            return False
        connection = stream.connection
        try:
            data = b"".join(
                connection.send(
                    TextMessage(data=frame) if isinstance(frame, str) else BytesMessage(data=frame)
                )
                for frame in frames
            )
        except LocalProtocolError:
            return False  # the WebSocket closed under us
        await stream.send(Data(stream_id=stream.stream_id, data=data))
        return True

    return write
