"""A user app for the end-to-end tests, loaded with ``--app tests.apps.e2e_app:setup``."""

from __future__ import annotations

import logging
from typing import assert_never

from quart import Blueprint

from runtime import (
    Actor,
    ChildSpec,
    FrameDecoder,
    Message,
    NodeSetup,
    Request,
    WebSocketSession,
    node_context,
    run_session,
)

logger = logging.getLogger("tests.e2e_app")


class Echo(Request[str], tag="e2e.echo", kw_only=True, frozen=True):
    text: str


class Explode(Message, tag="e2e.explode", kw_only=True, frozen=True):
    pass


EchoMessage = Echo | Explode


class EchoActor(Actor[EchoMessage]):
    async def on_start(self) -> None:
        logger.info("echo actor started")

    async def handle(self, message: EchoMessage) -> str:
        match message:
            case Echo(text=text):
                return text
            case Explode():
                raise RuntimeError("exploded on request")
            case _:
                assert_never(message)

    async def on_stop(self) -> None:
        logger.info("echo actor stopped")


routes = Blueprint("e2e", __name__)


@routes.get("/echo/<text>")
async def echo(text: str) -> dict[str, str]:
    return {"echo": await node_context().refs["echo"].ask(Echo(text=text))}


@routes.post("/explode")
async def explode() -> dict[str, str]:
    await node_context().refs["echo"].tell(Explode())
    return {"exploding": "yes"}


@routes.get("/slow")
async def slow() -> dict[str, bool]:
    """Stays in flight until the node starts draining, then completes."""
    logger.info("slow request started")
    await node_context().stopping.wait()
    return {"drained": True}


class SocketEcho(Message, tag="e2e.socket_echo", kw_only=True, frozen=True):
    text: str


SOCKET_FRAMES: FrameDecoder[SocketEcho] = FrameDecoder(SocketEcho)


async def _socket_frame(session: WebSocketSession, frame: SocketEcho) -> None:
    echoed = await node_context().refs["echo"].ask(Echo(text=frame.text))
    session.send({"type": "echoed", "text": echoed})


@routes.websocket("/ws/echo")
async def socket_echo() -> None:
    closed = await run_session(WebSocketSession(), SOCKET_FRAMES, _socket_frame)
    logger.info("websocket session closed with %d", closed.code)


def setup(node: NodeSetup) -> None:
    node.add_actor(ChildSpec("echo", EchoActor))
    node.add_blueprint(routes)


class FailingActor(Actor[Echo]):
    async def on_start(self) -> None:
        raise OSError("cannot reach the database")

    async def handle(self, message: Echo) -> None:
        return None


def failing_setup(node: NodeSetup) -> None:
    node.add_actor(ChildSpec("failing", FailingActor))
