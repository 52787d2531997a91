"""The hub's HTTP API over real Hypercorn and TCP: post to a room, read presence, list rooms."""

from __future__ import annotations

from typing import Any

import pytest

from actors.socket_hub import HubSettings
from runtime.testing import ManualClock

from .hub_support import HubNode, hub_node

pytestmark = pytest.mark.e2e

ROOM = "public:lobby"


async def post(
    node: HubNode, room: str, body: dict[str, Any], *roles: str, user: str = "ops"
) -> tuple[int, dict[str, Any]]:
    async with node.http() as http:
        response = await http.post(
            f"/api/rooms/{room}/messages", json=body, headers=node.bearer(user, roles=roles)
        )
    return response.status_code, response.json()


@pytest.mark.parametrize("role", ["admin", "service"])
async def test_an_admin_or_service_post_reaches_members_and_the_history(role: str) -> None:
    async with hub_node(clock=ManualClock()) as node, node.client("bob") as bob:
        joined, _ = await bob.join(ROOM)
        status, body = await post(node, ROOM, {"message": "maintenance at noon"}, role)
        assert status == 201
        frame = await bob.expect("new_message")
        assert body == {"room": ROOM, "epoch": joined["epoch"], "offset": 1, "id": frame["id"]}
        assert (frame["message"], frame["kind"], frame["user_id"], frame["offset"]) == (
            "maintenance at noon",
            "system",
            "ops",
            1,
        )
        await bob.quiet()
        async with node.client("carol") as carol:  # it is in the history
            await carol.send(
                {"type": "join_room", "room": ROOM, "since": 0, "epoch": joined["epoch"]}
            )
            assert (await carol.expect("new_message"))["id"] == frame["id"]
            assert (await carol.expect("room_joined"))["recovered"] is True


async def test_a_post_to_a_room_without_members_lands_in_its_history() -> None:
    async with hub_node(clock=ManualClock()) as node:
        status, body = await post(
            node, "project:9", {"message": "built", "kind": "notification"}, "admin"
        )
        assert (status, body["offset"]) == (201, 1)
        async with node.client("alice") as alice:
            await alice.send(
                {"type": "join_room", "room": "project:9", "since": 0, "epoch": body["epoch"]}
            )
            frame = await alice.expect("new_message")
            assert (frame["message"], frame["kind"]) == ("built", "notification")


@pytest.mark.parametrize(
    ("roles", "settings", "status", "code"),
    [
        ((), HubSettings(), 403, "insufficient_role"),
        (("viewer",), HubSettings(), 403, "insufficient_role"),
        (("service",), HubSettings(allow_service_send=False), 403, "insufficient_role"),
    ],
)
async def test_a_post_without_the_role_is_refused(
    roles: tuple[str, ...], settings: HubSettings, status: int, code: str
) -> None:
    async with hub_node(settings, clock=ManualClock()) as node, node.client("bob") as bob:
        await bob.join(ROOM)
        got, body = await post(node, ROOM, {"message": "hi"}, *roles)
        assert (got, body["error"]["code"]) == (status, code)
        await bob.quiet()
        assert (await node.statistics()).messages == 0


async def test_a_post_without_a_token_is_401() -> None:
    async with hub_node(clock=ManualClock()) as node, node.http() as http:
        response = await http.post(f"/api/rooms/{ROOM}/messages", json={"message": "hi"})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "missing_token"


@pytest.mark.parametrize(
    ("room", "body", "status", "code"),
    [
        ("lobby", {"message": "hi"}, 422, "invalid_room"),
        (ROOM, {"message": "   "}, 422, "invalid_message"),
        (ROOM, {"message": "x" * 1001}, 422, "message_too_long"),
        (ROOM, {"message": ""}, 422, "validation_error"),
        (ROOM, {"text": "hi"}, 422, "validation_error"),
        (ROOM, {"message": "hi", "kind": "shout"}, 422, "validation_error"),
    ],
)
async def test_a_bad_post_is_refused_with_its_code(
    room: str, body: dict[str, Any], status: int, code: str
) -> None:
    async with hub_node(clock=ManualClock()) as node:
        got, answer = await post(node, room, body, "admin")
        assert (got, answer["error"]["code"]) == (status, code)


async def test_presence_lists_the_rooms_members_for_those_who_may_join() -> None:
    async with (
        hub_node(clock=ManualClock()) as node,
        node.client("alice") as alice,
        node.client("alice") as alice_again,
        node.client("bob") as bob,
    ):
        await alice.join(ROOM)
        await alice_again.join(ROOM)
        await bob.join(ROOM)
        async with node.http() as http:
            response = await http.get(f"/api/rooms/{ROOM}/presence", headers=node.bearer("carol"))
            assert response.status_code == 200
            body = response.json()
            assert body["room"] == ROOM
            assert sorted(
                (m["user_id"], m["user_name"], m["connections"]) for m in body["members"]
            ) == [("alice", "Alice", 2), ("bob", "Bob", 1)]
            response = await http.get("/api/rooms/admin:ops/presence", headers=node.bearer("carol"))
            assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden")
            response = await http.get("/api/rooms/lobby/presence", headers=node.bearer("carol"))
            assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_room")
            response = await http.get(f"/api/rooms/{ROOM}/presence")
            assert response.status_code == 401


async def test_the_room_list_is_for_admins_and_counts_members() -> None:
    async with (
        hub_node(clock=ManualClock()) as node,
        node.client("alice") as alice,
        node.client("alice") as alice_again,
        node.client("bob") as bob,
    ):
        await alice.join(ROOM)
        await alice_again.join(ROOM)
        await bob.join(ROOM)
        await bob.say(ROOM, "one")
        async with node.http() as http:
            response = await http.get("/api/rooms", headers=node.bearer("root", roles=["admin"]))
            assert response.status_code == 200
            body = response.json()
            assert body["node"] == node.hub._parts.node_id
            rooms = {r["room"]: r for r in body["rooms"]}
            assert set(rooms) == {ROOM, "user:alice", "user:bob"}
            assert (rooms[ROOM]["users"], rooms[ROOM]["connections"], rooms[ROOM]["offset"]) == (
                2,
                3,
                1,
            )
            assert (rooms["user:alice"]["users"], rooms["user:alice"]["connections"]) == (1, 2)
            response = await http.get("/api/rooms", headers=node.bearer("carol"))
            assert (response.status_code, response.json()["error"]["code"]) == (
                403,
                "insufficient_role",
            )
