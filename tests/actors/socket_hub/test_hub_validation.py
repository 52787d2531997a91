"""Bad input over real Hypercorn and TCP: each gets its precise error, the connection goes on,
and no other user sees anything."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from actors.socket_hub import HubSettings
from runtime.testing import ManualClock

from .hub_support import Client, HubNode, hub_node

pytestmark = pytest.mark.e2e

LIMITS = HubSettings(max_frame_bytes=1024, max_message_chars=20)


@asynccontextmanager
async def pair() -> AsyncIterator[tuple[HubNode, Client, Client]]:
    """A node; alice (who misbehaves) and bob, both in ``public:lobby``."""
    async with (
        hub_node(LIMITS, clock=ManualClock()) as node,
        node.client("alice") as alice,
        node.client("bob") as bob,
    ):
        await alice.join("public:lobby")
        await bob.join("public:lobby")
        await alice.expect("user_joined_room")
        yield node, alice, bob


async def still_works(node: HubNode, alice: Client, bob: Client) -> None:
    """Alice's connection serves on, and bob saw nothing but her next good message."""
    echo, _ = await alice.say("public:lobby", "still here")
    seen = await bob.expect("new_message")
    assert (seen["id"], seen["message"]) == (echo["id"], "still here")
    await bob.quiet()


BAD_FRAMES: list[tuple[str, str | bytes | dict[str, Any], str]] = [
    ("not_json", "hello there", "malformed_frame"),
    ("truncated_json", '{"type": "ping"', "malformed_frame"),
    ("json_not_an_object", "[1, 2]", "validation_error"),
    ("binary", b'{"type": "ping"}', "binary_not_supported"),
    ("unknown_type", {"type": "shout", "room": "public:lobby"}, "unknown_type"),
    ("no_type", {"room": "public:lobby"}, "validation_error"),
    ("missing_field", {"type": "send_message", "room": "public:lobby"}, "validation_error"),
    ("wrong_type", {"type": "join_room", "room": 5}, "validation_error"),
    (
        "bad_kind",
        {"type": "send_message", "room": "public:lobby", "message": "x", "kind": "yell"},
        "validation_error",
    ),
    (
        "negative_since",
        {"type": "join_room", "room": "public:lobby", "since": -1},
        "validation_error",
    ),
    ("room_too_long", {"type": "join_room", "room": "public:" + "x" * 400}, "validation_error"),
    ("oversize", {"type": "ping", "pad": "x" * 2000}, "frame_too_large"),
]


@pytest.mark.parametrize(
    ("frame", "code"),
    [(frame, code) for _, frame, code in BAD_FRAMES],
    ids=[case for case, _, _ in BAD_FRAMES],
)
async def test_a_bad_frame_gets_its_error_and_the_connection_goes_on(
    frame: str | bytes | dict[str, Any], code: str
) -> None:
    async with pair() as (node, alice, bob):
        error = await alice.error(frame)
        assert error["code"] == code, error
        assert error["message"]
        await still_works(node, alice, bob)
        assert (await node.statistics()).bad_frames == 1


async def test_an_unknown_type_names_the_known_ones() -> None:
    async with pair() as (_node, alice, _bob):
        error = await alice.error({"type": "shout"})
        assert "join_room" in error["message"] and "send_message" in error["message"]


async def test_a_frame_past_hypercorns_limit_closes_1009() -> None:
    async with pair() as (node, alice, bob):
        limit = node.context.settings.websocket_max_message_bytes
        await alice.send(json.dumps({"type": "ping", "pad": "x" * (limit + 10)}))
        code, _ = await alice.closed()
        assert code == 1009
        await bob.expect("user_left_room")
        await bob.quiet()


@pytest.mark.parametrize(
    ("message", "code"),
    [("", "invalid_message"), ("   \n", "invalid_message"), ("x" * 21, "message_too_long")],
)
async def test_a_message_empty_or_over_the_limit_is_refused(message: str, code: str) -> None:
    async with pair() as (node, alice, bob):
        answer = await alice.request(
            {"type": "send_message", "room": "public:lobby", "message": message}
        )
        assert (answer["type"], answer["code"]) == ("error", code)
        await still_works(node, alice, bob)
        assert (await node.statistics()).bad_frames == 0  # refused by the hub, not malformed


async def test_a_message_at_the_limit_is_accepted() -> None:
    async with pair() as (_node, alice, bob):
        echo, ack = await alice.say("public:lobby", "x" * 20)
        assert ack["offset"] == echo["offset"] == 1
        assert (await bob.expect("new_message"))["message"] == "x" * 20


@pytest.mark.parametrize(
    "room",
    [
        "lobby",
        "public:",
        ":lobby",
        "Public:lobby",
        "public:a b",
        "public:{tag}",
        "public:a/b",
        "public:a*",
        "x" * 33 + ":lobby",
    ],
)
async def test_an_invalid_room_name_is_refused_for_join_and_send(room: str) -> None:
    async with pair() as (node, alice, bob):
        for frame in (
            {"type": "join_room", "room": room},
            {"type": "send_message", "room": room, "message": "hi"},
        ):
            answer = await alice.request(frame)
            assert (answer["type"], answer["code"]) == ("error", "invalid_room"), answer
        await still_works(node, alice, bob)


async def test_sending_to_a_room_not_joined_is_refused() -> None:
    async with pair() as (node, alice, bob):
        answer = await alice.request(
            {"type": "send_message", "room": "public:other", "message": "psst"}
        )
        assert (answer["type"], answer["code"]) == ("error", "not_in_room")
        assert "public:other" not in {info.room for info in await node.hub.rooms()}
        await still_works(node, alice, bob)


async def test_leaving_the_personal_room_or_a_room_not_joined_is_refused() -> None:
    async with pair() as (node, alice, bob):
        answer = await alice.request({"type": "leave_room", "room": "user:alice"})
        assert (answer["type"], answer["code"]) == ("error", "personal_room")
        answer = await alice.request({"type": "leave_room", "room": "public:other"})
        assert (answer["type"], answer["code"]) == ("error", "not_in_room")
        await alice.send({"type": "ping"})  # still in the personal room: task pushes reach it
        await alice.expect("pong")
        await node.hub.send_to_user("alice", "for you")
        assert (await alice.expect("new_message"))["room"] == "user:alice"
        await still_works(node, alice, bob)


async def test_leaving_a_room_stops_its_frames_and_tells_the_others() -> None:
    async with pair() as (_node, alice, bob):
        left = await alice.request({"type": "leave_room", "room": "public:lobby"})
        assert left == {"type": "room_left", "room": "public:lobby", "ref": left["ref"]}
        event = await bob.expect("user_left_room")
        assert (event["room"], event["user_id"]) == ("public:lobby", "alice")
        await bob.say("public:lobby", "anyone?")
        await alice.quiet()


async def test_an_error_carries_the_ref_of_the_frame_at_fault() -> None:
    async with pair() as (_node, alice, _bob):
        await alice.send({"type": "join_room", "room": "admin:x", "ref": "mine-7"})
        error = await alice.expect("error")
        assert (error["code"], error["ref"]) == ("forbidden", "mine-7")


async def test_many_bad_frames_in_a_row_close_1008() -> None:
    async with pair() as (_node, alice, bob):
        for _ in range(16):
            await alice.send("garbage")
        assert await alice.closed() == (1008, "too_many_bad_frames")
        await bob.expect("user_left_room")
        await bob.quiet()
