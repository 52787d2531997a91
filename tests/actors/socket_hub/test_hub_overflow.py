"""The overflow policy over real Hypercorn and TCP: a stalled client is cut off (4008) without
holding up the others; progress updates for one task coalesce for a slow reader.

A client "stalls" by not reading: its ``websockets`` client buffers one frame
(``max_queue=1``, and no compression, which would shrink the test's repetitive
text to nothing), then stops reading the socket, the kernel buffers fill and
the node's writes to it block; only then does its outbox fill. How much the
kernel buffers is not known in advance, so the tests send until the hub shows
the effect (the stalled connection gone, or frames waiting in its outbox), with
a bound on how many frames they send.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from actors.socket_hub import HubSettings
from runtime import websocket_statistics

from .hub_support import WAIT, Client, HubNode, hub_node

pytestmark = pytest.mark.e2e

ROOM = "public:lobby"
BIG = 60_000  # characters per chat message: the kernel buffers fill after a few hundred


async def test_a_stalled_client_is_closed_4008_and_a_healthy_one_gets_everything() -> None:
    settings = HubSettings(outbox_size=16, max_message_chars=BIG)
    async with (
        hub_node(settings) as node,
        node.client("bob") as bob,
        node.client("alice", max_queue=1, compression=None) as alice,
    ):
        await bob.join(ROOM)
        await alice.join(ROOM)
        await bob.expect("user_joined_room")
        (stalled,) = node.connections("alice")
        received: list[int] = []
        left = anyio.Event()

        async def read_bob() -> None:
            while True:
                frame = await bob.recv(timeout_seconds=30)
                if frame["type"] == "new_message":
                    received.append(frame["offset"])
                elif frame["type"] == "user_left_room":
                    left.set()

        async with anyio.create_task_group() as group:
            group.start_soon(read_bob)
            sent = 0
            with anyio.fail_after(30):
                while stalled.session.closing is None:
                    assert sent < 2000, "the stalled client was never cut off"
                    await node.hub.send_to_room(ROOM, f"{sent:05d}" + "x" * (BIG - 5))
                    sent += 1
                assert stalled.session.closing.code == 4008
                for _ in range(20):  # the room goes on without alice
                    await node.hub.send_to_room(ROOM, "after")
                    sent += 1
                # alice reads again: what the kernel held, then the close
                assert await alice.closed(timeout_seconds=30) == (4008, "slow_consumer")
                await left.wait()
                await node.wait_for(lambda: len(received) >= sent, timeout_seconds=30)
            group.cancel_scope.cancel()
        assert received == list(range(1, sent + 1))  # every one, in order
        assert node.connections("alice") == []
        assert websocket_statistics(node.app).outbox_overflows == 1
        stats = await node.statistics()
        assert stats.slow_disconnects == 1
        await bob.quiet()


async def _clog(node: HubNode, user: str, *, waiting: int) -> int:
    """Send big messages to ``user`` until ``waiting`` frames wait in its outbox; say how many."""
    (connection,) = node.connections(user)
    sent = 0
    with anyio.fail_after(30):
        while connection.session.statistics().outbox_used < waiting:
            assert sent < 2000, "the client's outbox never filled"
            await node.hub.send_to_user(user, "y" * BIG)
            sent += 1
    return sent


@pytest.mark.parametrize("outbox_size", [256, 8], ids=["roomy", "compacting"])
async def test_progress_of_one_task_coalesces_for_a_slow_reader_and_arrives_latest_first(
    outbox_size: int,
) -> None:
    # with 8, superseded updates outnumber the outbox many times over: it is compacted
    settings = HubSettings(outbox_size=outbox_size, max_message_chars=BIG)
    async with (
        hub_node(settings) as node,
        node.client("alice", max_queue=1, compression=None) as alice,
    ):
        clogged = await _clog(node, "alice", waiting=2)
        (connection,) = node.connections("alice")
        before = connection.session.statistics().outbox_used
        for step in range(1, 51):
            await node.hub.task_progress("alice", "task-a", step * 2.0, stage=f"a{step}")
            await node.hub.task_progress("alice", "task-b", step * 1.0, stage=f"b{step}")
        session = connection.session.statistics()
        assert session.outbox_used == before + 2  # one slot per task, however many updates
        assert session.coalesced == 98
        assert connection.session.closing is None
        frames: list[dict[str, Any]] = []
        with anyio.fail_after(WAIT * 3):
            while sum(f["type"] == "task_progress" for f in frames) < 2:
                frames.append(await alice.recv(timeout_seconds=30))
        await alice.quiet()
        chats = [f for f in frames if f["type"] == "new_message"]
        progress = [f for f in frames if f["type"] == "task_progress"]
        assert len(chats) == clogged
        assert [(f["task_id"], f["percentage"], f["stage"]) for f in progress] == [
            ("task-a", 100.0, "a50"),
            ("task-b", 50.0, "b50"),
        ]
        # the offsets tell the client what it skipped: the history has every update
        assert [f["offset"] for f in progress] == [clogged + 99, clogged + 100]
        stats = await node.statistics()
        assert stats.coalesced == 98
        assert stats.slow_disconnects == 0


async def test_chat_messages_never_coalesce() -> None:
    settings = HubSettings(outbox_size=256, max_message_chars=BIG)
    async with (
        hub_node(settings) as node,
        node.client("alice", max_queue=1, compression=None) as alice,
    ):
        await _clog(node, "alice", waiting=2)
        (connection,) = node.connections("alice")
        before = connection.session.statistics().outbox_used
        for n in range(10):
            await node.hub.send_to_user("alice", f"note {n}")
        after = connection.session.statistics()
        assert (after.outbox_used, after.coalesced) == (before + 10, 0)
        client: Client = alice
        notes: list[str] = []
        with anyio.fail_after(WAIT * 3):
            while len(notes) < 10:
                frame = await client.recv(timeout_seconds=30)
                if frame["message"].startswith("note"):
                    notes.append(frame["message"])
        assert notes == [f"note {n}" for n in range(10)]


async def test_a_coalesced_update_never_overtakes_frames_queued_after_the_one_it_replaces() -> None:
    """Offsets reach a slow reader in order even when progress coalesces: a client that
    drops mid-way and rejoins from the last offset it saw must not skip a frame."""
    settings = HubSettings(outbox_size=256, max_message_chars=BIG)
    async with (
        hub_node(settings) as node,
        node.client("alice", max_queue=1, compression=None) as alice,
    ):
        clogged = await _clog(node, "alice", waiting=2)
        await node.hub.task_progress("alice", "task-a", 10.0)
        await node.hub.send_to_user("alice", "between")
        await node.hub.task_progress("alice", "task-b", 10.0)
        await node.hub.task_progress("alice", "task-a", 20.0)
        await node.hub.task_progress("alice", "task-a", 30.0)  # right behind its last: in place
        (connection,) = node.connections("alice")
        assert connection.session.statistics().coalesced == 2
        frames: list[dict[str, Any]] = []
        with anyio.fail_after(WAIT * 3):
            while len(frames) < clogged + 3:
                frames.append(await alice.recv(timeout_seconds=30))
        await alice.quiet()
        offsets = [f["offset"] for f in frames]
        assert offsets == sorted(offsets), offsets[-4:]
        tail = [(f["type"], f.get("task_id"), f.get("percentage")) for f in frames[-3:]]
        assert tail == [
            ("new_message", None, None),
            ("task_progress", "task-b", 10.0),
            ("task_progress", "task-a", 30.0),
        ]
