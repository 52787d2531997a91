"""Delivery and recovery over real Hypercorn and TCP: personal rooms, a 500-client room,
and rejoining with ``since``/``epoch`` after a drop (no loss, no duplicate)."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import ClientConnection

from actors.socket_hub import HubSettings
from runtime.testing import ManualClock

from .hub_support import WAIT, Client, HubNode, hub_node

pytestmark = pytest.mark.e2e

ROOM = "public:lobby"


async def test_send_to_user_reaches_every_connection_of_the_user_and_no_one_else() -> None:
    async with (
        hub_node(clock=ManualClock()) as node,
        node.client("alice") as first,
        node.client("alice") as second,
        node.client("alice") as third,
        node.client("bob") as bob,
    ):
        posted = await node.hub.send_to_user("alice", "your export is ready")
        assert (posted.room, posted.offset) == ("user:alice", 1)
        seen = [await client.expect("new_message") for client in (first, second, third)]
        assert {frame["id"] for frame in seen} == {seen[0]["id"]}
        assert seen[0]["room"] == "user:alice"
        assert seen[0]["message"] == "your export is ready"
        assert (seen[0]["kind"], seen[0]["offset"], seen[0]["user_id"]) == (
            "notification",
            1,
            "system",
        )
        await bob.quiet()
        progress = await node.hub.task_progress("alice", "job-1", 40.0, stage="copy")
        assert progress.offset == 2
        for client in (first, second, third):
            frame = await client.expect("task_progress")
            assert (frame["task_id"], frame["percentage"], frame["stage"], frame["offset"]) == (
                "job-1",
                40.0,
                "copy",
                2,
            )
        await bob.quiet()


async def test_a_user_with_several_connections_is_present_once_with_its_count() -> None:
    async with (
        hub_node(clock=ManualClock()) as node,
        node.client("alice") as first,
        node.client("alice") as second,
        node.client("bob") as bob,
    ):
        await bob.join(ROOM)
        await first.join(ROOM)
        assert (await bob.expect("user_joined_room"))["user_id"] == "alice"
        _, presence = await second.join(ROOM)
        members = {m["user_id"]: m["connections"] for m in presence["members"]}
        assert members == {"alice": 2, "bob": 1}
        await bob.quiet()  # alice's second connection is no news
        await first.close()
        await node.wait_for(lambda: len(node.connections("alice")) == 1)
        await bob.quiet()
        await second.close()
        assert (await bob.expect("user_left_room"))["user_id"] == "alice"


async def _open_many(node: HubNode, count: int, users: int) -> list[ClientConnection]:
    semaphore = asyncio.Semaphore(50)
    tokens = [node.token(f"user{n}") for n in range(users)]

    async def one(index: int) -> ClientConnection:
        async with semaphore:
            ws = await node.open(token=tokens[index % users])
            client = Client(ws, None)
            await client.expect("welcome")
            await client.send({"type": "join_room", "room": "public:crowd", "ref": index})
            while (await client.recv())["type"] != "room_joined":
                pass
            return ws

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def test_500_clients_in_one_room_all_receive_one_broadcast() -> None:
    # 25 users with 20 connections each: a user's later connections are no presence news,
    # so the joins do not flood every member with 500 x 500 user_joined_room frames.
    count, users = 500, 25
    settings = HubSettings(outbox_size=4096, connections_per_user=count // users)
    async with hub_node(settings) as node:
        sockets = await _open_many(node, count, users)
        try:
            posted = await node.hub.send_to_room("public:crowd", "hello, crowd")

            async def delivered(ws: ClientConnection) -> dict[str, Any]:
                client = Client(ws, None)
                while True:  # presence events of later joiners come first
                    frame = await client.recv(timeout_seconds=30)
                    if frame["type"] == "new_message":
                        return frame

            with anyio.fail_after(60):
                frames = await asyncio.gather(*(delivered(ws) for ws in sockets))
            assert len(frames) == count
            assert {(f["room"], f["offset"], f["message"]) for f in frames} == {
                ("public:crowd", posted.offset, "hello, crowd")
            }
            info = {i.room: i for i in await node.hub.rooms()}["public:crowd"]
            assert (info.connections, info.users) == (count, users)
            assert (await node.statistics()).connections == count
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets))


# -- recovery ---------------------------------------------------------------------------------


async def epoch_of(node: HubNode, room: str) -> str:
    """The epoch of ``room``'s history, as this node's hub has it."""
    return {info.room: info.epoch for info in await node.hub.rooms()}[room]


async def test_a_client_that_dropped_rejoins_with_since_and_gets_exactly_what_it_missed() -> None:
    async with hub_node(clock=ManualClock()) as node, node.client("bob") as bob:
        await bob.join(ROOM)
        async with node.client("alice") as alice:
            await alice.join(ROOM)
            await bob.expect("user_joined_room")
            await bob.say(ROOM, "before")
            last = await alice.expect("new_message")
        await bob.expect("user_left_room")
        sent = [(await bob.say(ROOM, f"missed {n}"))[0] for n in range(5)]
        async with node.client("alice") as alice:
            ref = "rejoin"
            await alice.send(
                {
                    "type": "join_room",
                    "room": ROOM,
                    "since": last["offset"],
                    "epoch": await epoch_of(node, ROOM),
                    "ref": ref,
                }
            )
            replayed = [await alice.expect("new_message") for _ in sent]
            assert [(f["id"], f["offset"]) for f in replayed] == [
                (f["id"], f["offset"]) for f in sent
            ]
            assert [f["offset"] for f in replayed] == list(
                range(last["offset"] + 1, last["offset"] + 6)
            )
            joined = await alice.expect("room_joined")
            assert (joined["recovered"], joined["offset"], joined["ref"]) == (
                True,
                sent[-1]["offset"],
                ref,
            )
            await alice.expect("presence")
            await bob.expect("user_joined_room")
            live, _ = await bob.say(ROOM, "live")
            assert (await alice.expect("new_message"))["id"] == live["id"]
            await alice.quiet()  # no duplicate of anything


async def test_a_rejoin_while_messages_keep_coming_has_no_gap_and_no_duplicate() -> None:
    async with hub_node(HubSettings(history_size=1000)) as node, node.client("bob") as bob:
        await bob.join(ROOM)
        for n in range(10):
            await node.hub.send_to_room(ROOM, f"old {n}")
        async with node.client("alice") as alice:
            sender = asyncio.ensure_future(
                asyncio.gather(*(node.hub.send_to_room(ROOM, f"new {n}") for n in range(50)))
            )
            joined_epoch = await epoch_of(node, ROOM)
            await alice.send({"type": "join_room", "room": ROOM, "since": 4, "epoch": joined_epoch})
            offsets: list[int] = []
            joined: dict[str, Any] | None = None
            with anyio.fail_after(WAIT):
                while len(offsets) < 56 or joined is None:
                    frame = await alice.recv()
                    if frame["type"] == "new_message":
                        offsets.append(frame["offset"])
                    elif frame["type"] == "room_joined":
                        joined = frame
            await sender
            assert offsets == list(range(5, 61))
            assert joined["recovered"] is True
            await alice.expect("presence")
            await alice.quiet()


async def test_a_history_trimmed_past_since_says_recovered_false() -> None:
    async with (
        hub_node(HubSettings(history_size=3), clock=ManualClock()) as node,
        node.client("bob") as bob,
    ):
        await bob.join(ROOM)
        epoch = await epoch_of(node, ROOM)
        for n in range(6):
            await bob.say(ROOM, f"m{n}")
        async with node.client("alice") as alice:
            joined = await alice.request(
                {"type": "join_room", "room": ROOM, "since": 1, "epoch": epoch}
            )
            assert (joined["type"], joined["recovered"], joined["offset"]) == (
                "room_joined",
                False,
                6,
            )
            await alice.expect("presence")
            await alice.quiet()  # nothing replayed: the client resynchronises
            await bob.expect("user_joined_room")
            await bob.say(ROOM, "live")
            assert (await alice.expect("new_message"))["offset"] == 7
        assert (await node.statistics()).replays_unrecovered == 1


async def test_a_rejoin_with_another_epoch_says_recovered_false() -> None:
    async with hub_node(clock=ManualClock()) as node, node.client("bob") as bob:
        await bob.join(ROOM)
        await bob.say(ROOM, "m0")
        async with node.client("alice") as alice:
            joined = await alice.request(
                {"type": "join_room", "room": ROOM, "since": 0, "epoch": "not-the-epoch"}
            )
            assert (joined["type"], joined["recovered"], joined["offset"]) == (
                "room_joined",
                False,
                1,
            )
            await alice.expect("presence")
            await alice.quiet()


async def test_a_rejoin_that_missed_nothing_is_recovered_with_no_frames() -> None:
    async with hub_node(clock=ManualClock()) as node, node.client("bob") as bob:
        await bob.join(ROOM)
        echo, _ = await bob.say(ROOM, "m0")
        epoch = await epoch_of(node, ROOM)
        async with node.client("alice") as alice:
            joined = await alice.request(
                {"type": "join_room", "room": ROOM, "since": echo["offset"], "epoch": epoch}
            )
            assert (joined["type"], joined["recovered"], joined["offset"]) == (
                "room_joined",
                True,
                1,
            )
            await alice.expect("presence")
            await alice.quiet()


async def test_progress_pushed_while_the_user_was_away_is_recovered_in_the_personal_room() -> None:
    async with hub_node(clock=ManualClock()) as node:
        async with node.client("alice") as alice:
            assert alice.welcome is not None
            since, epoch = alice.welcome["offset"], alice.welcome["epoch"]
        await node.wait_for(lambda: node.connections("alice") == [])
        for percentage in (10.0, 60.0, 100.0):
            state = "completed" if percentage == 100.0 else "running"
            await node.hub.task_progress("alice", "job-9", percentage, state=state)
        async with node.client("alice") as alice:
            assert alice.welcome is not None
            assert (alice.welcome["epoch"], alice.welcome["offset"]) == (epoch, 3)
            await alice.send(
                {"type": "join_room", "room": "user:alice", "since": since, "epoch": epoch}
            )
            frames = [await alice.expect("task_progress") for _ in range(3)]
            assert [(f["offset"], f["percentage"], f.get("state", "running")) for f in frames] == [
                (1, 10.0, "running"),
                (2, 60.0, "running"),
                (3, 100.0, "completed"),
            ]
            joined = await alice.expect("room_joined")
            assert (joined["room"], joined["recovered"], joined["offset"]) == (
                "user:alice",
                True,
                3,
            )
            await alice.expect("presence")
            await alice.quiet()


async def test_a_rejoin_from_an_offset_ahead_of_the_room_says_recovered_false() -> None:
    async with hub_node(clock=ManualClock()) as node, node.client("bob") as bob:
        await bob.join(ROOM)
        await bob.say(ROOM, "m0")
        epoch = await epoch_of(node, ROOM)
        async with node.client("alice") as alice:
            joined = await alice.request(
                {"type": "join_room", "room": ROOM, "since": 50, "epoch": epoch}
            )
            assert (joined["type"], joined["recovered"], joined["offset"]) == (
                "room_joined",
                False,
                1,
            )
            await alice.expect("presence")
            await bob.expect("user_joined_room")
            live, _ = await bob.say(ROOM, "live")  # offset 2: not mistaken for seen
            assert (await alice.expect("new_message"))["id"] == live["id"]


async def test_a_broadcast_reaches_every_connection_of_the_node() -> None:
    async with (
        hub_node(clock=ManualClock()) as node,
        node.client("alice") as alice,
        node.client("bob") as bob,
        node.client("bob") as bob_again,
    ):
        await alice.join(ROOM)
        assert await node.hub.broadcast("restart at noon") == 3
        frames = [await client.expect("new_message") for client in (alice, bob, bob_again)]
        assert {(f["room"], f["message"], f["kind"], f["id"]) for f in frames} == {
            ("*", "restart at noon", "system", frames[0]["id"])
        }
        for client in (alice, bob, bob_again):
            await client.quiet()


async def test_task_progress_carries_its_state_and_result() -> None:
    async with hub_node(clock=ManualClock()) as node, node.client("alice") as alice:
        await node.hub.task_progress(
            "alice", "job-3", 100.0, state="completed", result={"rows": 12}, message="done"
        )
        frame = await alice.expect("task_progress")
        assert (frame["state"], frame["result"], frame["message"], frame["room"]) == (
            "completed",
            {"rows": 12},
            "done",
            "user:alice",
        )


async def test_a_replay_longer_than_the_outbox_is_delivered_not_cut_off() -> None:
    """A rejoin may replay up to ``history_size`` frames at once: more than ``outbox_size``
    must not close the client as a slow consumer (it would rejoin and be cut off again)."""
    settings = HubSettings(history_size=100, outbox_size=16)
    async with hub_node(settings, clock=ManualClock()) as node:
        posted = [await node.hub.send_to_room(ROOM, f"m{n}") for n in range(40)]
        epoch = posted[-1].epoch
        async with node.client("alice") as alice:
            await alice.send({"type": "join_room", "room": ROOM, "since": 0, "epoch": epoch})
            frames = [await alice.recv() for _ in range(41)]
            assert [f["offset"] for f in frames[:40]] == list(range(1, 41))
            assert (frames[40]["type"], frames[40]["recovered"]) == ("room_joined", True)
            await alice.expect("presence")
            for n in range(10):  # live traffic right after is bounded as usual, and flows
                await node.hub.send_to_room(ROOM, f"live {n}")
            live = [await alice.expect("new_message") for _ in range(10)]
            assert [f["offset"] for f in live] == list(range(41, 51))
