"""The WebSocket edge's pure parts, and Quart's in-process websocket client for speed."""

from __future__ import annotations

import pytest
from quart import Blueprint, websocket

from runtime import (
    AuthFrame,
    CloseCode,
    ErrorFrame,
    FrameDecoder,
    FrameError,
    Message,
    NodeSetup,
    Secret,
    Settings,
    current_principal,
    encode_frame,
    origin_allowed,
    require_auth,
    websocket_statistics,
)
from runtime.testing import open_app


class Ping(Message, tag="ping", kw_only=True, frozen=True):
    n: int


class Pong(Message, tag="pong", kw_only=True, frozen=True):
    pass


DECODER: FrameDecoder[Ping | Pong] = FrameDecoder(Ping | Pong)


@pytest.mark.parametrize(
    ("origin", "allowed", "scheme", "host", "verdict"),
    [
        (None, (), "ws", "node:8000", True),  # no Origin: not a browser
        ("https://evil.example", ("*",), "ws", "node:8000", True),
        ("https://app.example", ("https://app.example",), "wss", "node", True),
        ("https://app.example:443", ("https://APP.example/",), "wss", "node", True),
        ("http://node:8000", (), "ws", "node:8000", True),  # its own origin
        ("https://node", (), "wss", "node:443", True),
        ("https://node:8000", (), "ws", "node:8000", False),  # scheme differs
        ("http://node:8001", (), "ws", "node:8000", False),  # port differs
        ("https://evil.example", ("https://app.example",), "ws", "node", False),
        ("null", ("https://app.example",), "ws", "node", False),
        ("https://app.example/path", ("https://app.example",), "ws", "node", False),
        ("not an origin", (), "ws", "node", False),
        ("http://node:99999", (), "ws", "node", False),
    ],
)
def test_origin_allowed(
    origin: str | None, allowed: tuple[str, ...], scheme: str, host: str, verdict: bool
) -> None:
    assert origin_allowed(origin, allowed=allowed, scheme=scheme, host=host) is verdict


@pytest.mark.parametrize(
    ("data", "code", "in_message"),
    [
        (b"\xff\xfe", "malformed_frame", "not valid JSON"),  # not UTF-8
        ("{", "malformed_frame", "truncated"),
        ('{"type": "pang"}', "unknown_type", "unknown frame type 'pang'; expected one of"),
        ('{"type": 3}', "validation_error", "$.type"),
        ('{"type": "ping"}', "validation_error", "`n`"),
        ('{"type": "ping", "n": "1"}', "validation_error", "$.n"),
        ('"ping"', "validation_error", "object"),
    ],
)
def test_frame_decoder_errors(data: str | bytes, code: str, in_message: str) -> None:
    with pytest.raises(FrameError) as caught:
        DECODER.decode(data)
    assert caught.value.code == code
    assert in_message in caught.value.message


def test_frame_decoder_decodes_text_and_bytes_and_knows_its_tags() -> None:
    assert DECODER.decode('{"type": "ping", "n": 1}') == Ping(n=1)
    assert DECODER.decode(b'{"type": "pong"}') == Pong()
    assert DECODER.tags == {"ping", "pong"}
    assert FrameDecoder(AuthFrame).decode('{"type":"auth","token":"t"}') == AuthFrame(token="t")


def test_error_frames_encode_once_without_an_empty_ref() -> None:
    assert encode_frame(ErrorFrame(code="c", message="m")) == (
        '{"type":"error","code":"c","message":"m"}'
    )
    assert encode_frame(ErrorFrame(code="c", message="m", ref=7)).endswith('"ref":7}')


def test_close_codes_are_the_documented_ones() -> None:
    assert {code.name: int(code) for code in CloseCode} == {
        "NORMAL": 1000,
        "GOING_AWAY": 1001,
        "POLICY_VIOLATION": 1008,
        "MESSAGE_TOO_BIG": 1009,
        "INTERNAL_ERROR": 1011,
        "TRY_AGAIN_LATER": 1013,
        "UNAUTHORIZED": 4001,
        "FORBIDDEN": 4003,
        "SLOW_CONSUMER": 4008,
        "RATE_LIMITED": 4029,
    }


async def test_require_auth_on_a_websocket_route_in_process() -> None:
    bp = Blueprint("ws_unit", __name__)

    @bp.websocket("/ws")
    @require_auth()
    async def ws() -> None:
        await websocket.accept()
        await websocket.send(current_principal().subject)

    def compose(node: NodeSetup) -> None:
        node.add_blueprint(bp)

    settings = Settings(jwt_secret=Secret("a-test-secret-that-is-32-bytes-long!"))
    async with open_app(settings, compose=compose) as (app, context):
        assert context.verifier is not None
        token = context.verifier.issue("carol")
        async with app.test_client().websocket(f"/ws?token={token}") as socket:
            assert await socket.receive() == "carol"
        stats = websocket_statistics(app)
        assert stats.rejected == {}
