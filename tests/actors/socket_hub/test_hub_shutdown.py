"""The drain on SIGTERM over real Hypercorn and TCP: when the node starts stopping, every
client gets ``reconnect {after_ms, positions}`` with its rooms' last offsets, then 1001."""

from __future__ import annotations

import pytest

from actors.socket_hub import HubSettings
from runtime.testing import ManualClock

from .hub_support import hub_node

pytestmark = pytest.mark.e2e

ROOM = "public:lobby"


async def test_stopping_sends_every_client_reconnect_with_its_positions_then_1001() -> None:
    settings = HubSettings(reconnect_max_ms=500)
    async with (
        hub_node(settings, clock=ManualClock()) as node,
        node.client("alice") as alice,
        node.client("bob") as bob,
    ):
        await alice.join(ROOM)
        await bob.join(ROOM)
        await bob.join("project:7")
        await alice.expect("user_joined_room")
        for n in range(3):
            await alice.say(ROOM, f"m{n}")
            await bob.expect("new_message")
        await node.hub.task_progress("bob", "job", 10.0)
        await bob.expect("task_progress")
        rooms = {info.room: (info.epoch, info.offset) for info in await node.hub.rooms()}
        assert rooms[ROOM][1] == 3 and rooms["user:bob"][1] == 1

        node.context.stopping.set()

        for client, mine in ((alice, ["user:alice", ROOM]), (bob, ["user:bob", ROOM, "project:7"])):
            frames = await client.frames_until_close()
            assert [f["type"] for f in frames] == ["reconnect"], frames
            reconnect = frames[0]
            assert 0 <= reconnect["after_ms"] <= 500
            assert reconnect["positions"] == {room: list(rooms[room]) for room in mine}
            assert (client.ws.close_code, client.ws.close_reason) == (1001, "node_stopping")


async def test_a_stopping_node_refuses_new_connections_503() -> None:
    async with hub_node(clock=ManualClock()) as node:
        async with node.client("alice") as alice:
            node.context.stopping.set()
            await alice.closed()
        status, body = await node.refused(headers=node.bearer("bob"))
        assert (status, body["error"]["code"]) == (503, "node_stopping")
        assert (await node.statistics()).refused_connections == 1


async def test_the_positions_let_a_client_resume_without_loss() -> None:
    """The offsets in ``reconnect`` are what a rejoin's ``since`` needs: nothing is replayed
    twice, and what came after is replayed (checked on the history the node keeps)."""
    async with hub_node(clock=ManualClock()) as node:
        async with node.client("alice") as alice:
            await alice.join(ROOM)
            await alice.say(ROOM, "seen")
            node.context.stopping.set()
            (reconnect,) = await alice.frames_until_close()
        epoch, offset = reconnect["positions"][ROOM]
        replay = await node.hub._parts.history.replay(ROOM, offset, epoch)
        assert replay.recovered and replay.frames == []
        await node.hub.send_to_room(ROOM, "after the drain")
        replay = await node.hub._parts.history.replay(ROOM, offset, epoch)
        assert replay.recovered and [o for o, _ in replay.frames] == [offset + 1]
