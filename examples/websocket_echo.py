# examples/websocket_echo.py
"""A WebSocket route on the runtime's edge: authenticate, decode frames, answer or refuse.

Run it with ``python -m runtime --app examples.websocket_echo:setup`` (and
``SWITCHYARD_JWT_SECRET`` set), then connect to ``ws://127.0.0.1:8000/ws/echo?token=...``
or send ``{"type": "auth", "token": "..."}`` as the first frame.
"""

from typing import assert_never

from quart import Blueprint

from runtime import (
    FrameDecoder,
    Message,
    NodeSetup,
    Rejected,
    WebSocketSession,
    authenticate_websocket,
    run_session,
)


class Say(Message, tag="echo.say", frozen=True, kw_only=True):
    text: str
    ref: str | int | None = None  # echoed in the reply, and in an error frame about this frame


class Ping(Message, tag="echo.ping", frozen=True, kw_only=True):
    pass


class Said(Message, tag="echo.said", frozen=True, kw_only=True):
    text: str
    by: str
    ref: str | int | None = None


class Pong(Message, tag="echo.pong", frozen=True, kw_only=True):
    pass


# One decoder for the union, built once: a bad frame becomes an error frame
# (malformed_frame, unknown_type, validation_error, ...) and the session goes on.
FRAMES: FrameDecoder[Say | Ping] = FrameDecoder(Say | Ping)

routes = Blueprint("echo", __name__)


async def on_frame(session: WebSocketSession, frame: Say | Ping) -> None:
    match frame:
        case Say(text=text, ref=ref):
            if not text.strip():  # a user error: an error frame with this code, not a crash
                raise Rejected("empty_text", "say something: text is blank")
            who = session.principal.subject if session.principal is not None else "anonymous"
            session.send(Said(text=text, by=who, ref=ref))
        case Ping():
            session.send(Pong())
        case _:
            assert_never(frame)


@routes.websocket("/ws/echo")
async def echo() -> None:
    # The token comes from the `token` query parameter or, failing that, the first frame.
    principal = await authenticate_websocket(accept=("query", "first_frame"))
    session = WebSocketSession(principal=principal, outbox_size=16)
    await run_session(session, FRAMES, on_frame)


def setup(node: NodeSetup) -> None:
    node.add_blueprint(routes)
