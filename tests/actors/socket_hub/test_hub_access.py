"""Who may join which room, over real Hypercorn and TCP; refusals leak nothing to others."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from runtime import Principal
from runtime.testing import ManualClock

from .hub_support import Client, HubNode, hub_node

pytestmark = pytest.mark.e2e


@asynccontextmanager
async def watched() -> AsyncIterator[tuple[HubNode, Client]]:
    """A node and bob, a member of ``public:lobby`` who must see nothing of others' refusals."""
    async with hub_node(clock=ManualClock()) as node, node.client("bob") as bob:
        await bob.join("public:lobby")
        yield node, bob


async def refused_join(client: Client, room: str, **fields: object) -> dict[str, object]:
    answer = await client.request({"type": "join_room", "room": room, **fields})
    assert answer["type"] == "error", answer
    await client.quiet()
    return answer


async def test_everyone_may_join_a_public_room_and_members_see_each_other() -> None:
    async with watched() as (node, bob), node.client("alice") as alice:
        joined, presence = await alice.join("public:lobby")
        assert (joined["room"], joined["offset"]) == ("public:lobby", 0)
        assert joined["epoch"]
        assert sorted(m["user_id"] for m in presence["members"]) == ["alice", "bob"]
        event = await bob.expect("user_joined_room")
        assert event == {
            "type": "user_joined_room",
            "room": "public:lobby",
            "user_id": "alice",
            "user_name": "Alice",
        }


async def test_an_admin_room_needs_the_admin_role() -> None:
    async with watched() as (node, bob):
        async with node.client("alice") as alice:
            error = await refused_join(alice, "admin:ops")
            assert error["code"] == "forbidden"
            assert "admin" in str(error["message"])
        async with node.client("root", roles=["admin"]) as root:
            joined, _ = await root.join("admin:ops")
            assert joined["room"] == "admin:ops"
        await bob.quiet()


async def test_a_personal_room_is_only_its_users() -> None:
    async with watched() as (node, bob), node.client("alice") as alice:
        joined = await alice.request({"type": "join_room", "room": "user:alice"})
        assert (joined["type"], joined["room"]) == ("room_joined", "user:alice")
        await alice.expect("presence")
        error = await refused_join(alice, "user:bob")
        assert error["code"] == "forbidden"
        await bob.quiet()


async def test_project_rooms_are_open_by_default() -> None:
    async with watched() as (node, bob), node.client("alice") as alice:
        joined, _ = await alice.join("project:42")
        assert joined["room"] == "project:42"
        await bob.quiet()


async def test_a_replaced_project_policy_decides_who_joins() -> None:
    asked: list[tuple[str, str]] = []

    async def only_own_projects(principal: Principal, project_id: str) -> bool:
        asked.append((principal.subject, project_id))
        return project_id == f"{principal.subject}-project"

    async with watched() as (node, bob), node.client("alice") as alice:
        node.hub.set_project_policy(only_own_projects)
        error = await refused_join(alice, "project:42")
        assert error["code"] == "forbidden"
        joined, _ = await alice.join("project:alice-project")
        assert joined["room"] == "project:alice-project"
        assert asked == [("alice", "42"), ("alice", "alice-project")]
        await bob.quiet()


async def test_a_room_of_an_unknown_type_cannot_be_joined() -> None:
    async with watched() as (node, bob), node.client("alice", roles=["admin"]) as alice:
        error = await refused_join(alice, "secret:vault")
        assert error["code"] == "forbidden"
        assert "'secret'" in str(error["message"])
        await bob.quiet()


async def test_a_room_type_that_does_not_match_the_name_is_refused() -> None:
    async with watched() as (node, bob), node.client("alice") as alice:
        error = await refused_join(alice, "admin:ops", room_type="public")
        assert error["code"] == "room_type_mismatch"
        joined, _ = await alice.join("public:lobby", room_type="public")
        assert joined["room"] == "public:lobby"
        assert (await bob.expect("user_joined_room"))["user_id"] == "alice"


async def test_a_refused_join_leaves_no_room_behind() -> None:
    async with watched() as (node, _bob), node.client("alice") as alice:
        await refused_join(alice, "admin:ops")
        await refused_join(alice, "user:bob")
        rooms = {info.room for info in await node.hub.rooms()}
        assert rooms == {"public:lobby", "user:alice", "user:bob"}
        assert list(node.connections("alice")[0].rooms) == ["user:alice"]


async def test_rooms_with_no_members_leave_no_state_behind() -> None:
    async with watched() as (node, _bob):
        async with node.client("alice") as alice:
            await alice.join("public:elsewhere")
            assert "public:elsewhere" in {info.room for info in await node.hub.rooms()}
        await node.wait_for(lambda: node.connections("alice") == [])
        rooms = {info.room for info in await node.hub.rooms()}
        assert rooms == {"public:lobby", "user:bob"}
