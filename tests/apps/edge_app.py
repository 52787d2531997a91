"""A user app for the HTTP edge tests, loaded with ``--app tests.apps.edge_app:setup``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import anyio
import msgspec
from quart import Blueprint, Response, request, websocket

from runtime import NodeSetup, decode_body

logger = logging.getLogger("tests.edge_app")

routes = Blueprint("edge", __name__)


class Note(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /edge/note``."""

    text: str


@routes.post("/edge/note")
async def note() -> dict[str, str]:
    """Decode a JSON body with the runtime's ``decode_body`` and echo it."""
    body = await decode_body(Note)
    return {"text": body.text}


@routes.post("/edge/upload")
async def upload() -> dict[str, int]:
    """Read the whole raw body and say how long it was."""
    logger.info("upload request started")
    body = await request.get_data(as_text=False)
    return {"bytes": len(body)}


@routes.get("/edge/hang")
async def hang() -> dict[str, str]:
    """Never completes on its own: it outlives any shutdown grace period."""
    logger.info("hang request started")
    await anyio.Event().wait()
    return {"never": "reached"}


@routes.get("/edge/stream")
async def stream() -> Response:
    """Streams one chunk, then never ends: cut mid-response when the node stops."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first\n"
        logger.info("stream request sent its first chunk")
        await anyio.Event().wait()

    return Response(chunks(), content_type="text/plain")


@routes.websocket("/edge/ws-hang")
async def ws_hang() -> None:
    """Accepts, then ignores the node stopping: it outlives any grace period."""
    await websocket.accept()
    logger.info("hang websocket accepted")
    await anyio.Event().wait()


def setup(node: NodeSetup) -> None:
    """Serve the edge test routes (no actors)."""
    node.add_blueprint(routes)
