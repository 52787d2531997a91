"""Hub nodes on one real Redis: room traffic across nodes, presence, faults and deploys.

Real nodes (in process, each served by Hypercorn over TCP, or ``python -m
runtime`` child processes where a signal is the point), real clients, a real
redis-server. Traffic runs at the rates chat rooms see (tens to a hundred
messages a second); what members received is judged by the history checker
(see ``nodes_support.check_room``).
"""

from __future__ import annotations

import functools
import os
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from actors.socket_hub import HUB, HubSettings
from runtime.testing import NodeProcess, RedisServer

from .nodes_support import (
    SECRET,
    Member,
    Served,
    check_room,
    poll_until,
    serve_nodes,
    wait_delivered,
)

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

ROOT = str(Path(__file__).resolve().parents[3])
ROOM = "public:chat"


def _answers(ref: str, frame: dict[str, Any]) -> bool:
    return frame.get("ref") == ref


async def send_paced(member: Member, room: str, count: int, rate: float, tag: str) -> list[int]:
    """Send ``count`` messages at ``rate``/s; return the offsets acknowledged."""
    acked: list[int] = []
    for index in range(count):
        ref = f"{tag}-{index}"
        await member.send_frame(
            {"type": "send_message", "room": room, "message": f"{tag} {index}", "ref": ref}
        )
        ack = await member.wait_for(functools.partial(_answers, ref))
        assert ack["type"] == "ack", ack
        if "offset" in ack:
            acked.append(ack["offset"])
        await anyio.sleep(1 / rate)
    return acked


async def test_three_nodes_exchange_room_traffic_in_order_without_loss(
    redis_server: RedisServer,
) -> None:
    async with serve_nodes(3, redis_server.url) as nodes, anyio.create_task_group() as tg:
        members = [Member(f"u{i}", nodes[i % 3].url) for i in range(6)]
        for member in members:
            await member.connect()
            tg.start_soon(member.pump)
        for index, member in enumerate(members):
            joined = await member.join(ROOM, ref=index)
            assert joined["type"] == "room_joined", joined
        acked: list[int] = []

        async def sender(member: Member) -> None:
            acked.extend(await send_paced(member, ROOM, 20, 20.0, member.user))

        async with anyio.create_task_group() as senders:
            for member in members:
                senders.start_soon(sender, member)
        assert sorted(acked) == list(range(1, 121))
        await wait_delivered(members, ROOM, acked)
        report = check_room(ROOM, acked, members)
        assert report.deliveries == 6 * 120
        for member in members:  # per-room order: offsets strictly increase for every member
            assert member.delivered(ROOM) == sorted(member.delivered(ROOM))
        for served in nodes:
            stats = await served.node.context.get(HUB).statistics()
            assert stats.lost == 0
        tg.cancel_scope.cancel()


async def test_a_broadcast_reaches_every_connection_of_every_node_once(
    redis_server: RedisServer,
) -> None:
    async with serve_nodes(2, redis_server.url) as (a, b), anyio.create_task_group() as tg:
        members = [Member("ann", a.url), Member("ben", b.url), Member("cy", b.url)]
        for member in members:
            await member.connect()
            tg.start_soon(member.pump)
        await members[1].join(ROOM, ref=1)  # the other node has a room open: fanout is live
        assert await a.node.context.get(HUB).broadcast("maintenance at noon") == 1
        for member in members:
            await member.wait_for(lambda f: f["type"] == "new_message" and f["room"] == "*")
        ping = await members[1].join("public:after", ref=2)  # a later frame, same connection
        assert ping["type"] == "room_joined"
        for member in members:  # exactly once each: a relayed broadcast is never published again
            seen = [f for f in member.frames if f["type"] == "new_message" and f["room"] == "*"]
            assert [f["message"] for f in seen] == ["maintenance at noon"]
        stats_b = await b.node.context.get(HUB).statistics()
        assert stats_b.connections == 2
        tg.cancel_scope.cancel()


async def test_presence_is_merged_across_nodes(redis_server: RedisServer) -> None:
    async with serve_nodes(2, redis_server.url) as (a, b), anyio.create_task_group() as tg:
        alice_a, alice_b, bob_b = (
            Member("alice", a.url),
            Member("alice", b.url),
            Member("bob", b.url),
        )
        for member in (alice_a, alice_b, bob_b):
            await member.connect()
            tg.start_soon(member.pump)
            await member.join(ROOM, ref=1)
        # A join into a room this node already holds is written by the background writer
        # (see _presence_redis), so the other node sees it within a batch, not at once.
        for served in (a, b):

            async def merged(served: Served = served) -> bool:
                members = await served.node.context.get(HUB).presence(ROOM)
                return {m.user_id: m.connections for m in members} == {"alice": 2, "bob": 1}

            await poll_until(merged, timeout_seconds=10)
        joined = await alice_a.wait_for(
            lambda f: f["type"] == "user_joined_room" and f["user_id"] == "bob"
        )
        assert joined["room"] == ROOM  # bob joined on the other node; alice heard of it
        await bob_b.close()

        async def only_alice() -> bool:
            return {m.user_id for m in await a.node.context.get(HUB).presence(ROOM)} == {"alice"}

        await poll_until(only_alice, timeout_seconds=10)
        tg.cancel_scope.cancel()


async def test_redis_restarted_empty_changes_the_epoch(redis_server: RedisServer) -> None:
    async with serve_nodes(2, redis_server.url) as (a, b), anyio.create_task_group() as tg:
        sender, listener = Member("sender", a.url), Member("listener", b.url)
        for member in (sender, listener):
            await member.connect()
            tg.start_soon(member.pump)
            await member.join(ROOM, ref=1)
        before = await send_paced(sender, ROOM, 5, 50.0, "before")
        await wait_delivered([listener], ROOM, before)
        old_epoch = listener.positions[ROOM][0]
        redis_server.restart(empty=True)
        # The next message after the restart lands in a new epoch; both members are told.
        with anyio.fail_after(20):
            while True:
                ref = f"after-{time.monotonic()}"
                await sender.send_frame(
                    {"type": "send_message", "room": ROOM, "message": "after", "ref": ref}
                )
                ack = await sender.wait_for(functools.partial(_answers, ref))
                if ack.get("offset"):
                    break
                await anyio.sleep(0.1)
        reset = await listener.wait_for(
            lambda f: f["type"] == "room_joined" and f.get("recovered") is False
        )
        assert reset["epoch"] != old_epoch
        # A client that rejoins with the old epoch is told it cannot recover.
        late = Member("late", b.url)
        await late.connect()
        tg.start_soon(late.pump)
        late.positions[ROOM] = (old_epoch, before[-1])
        joined = await late.join(ROOM, ref=7, recover=True)
        assert joined["recovered"] is False and joined["epoch"] == reset["epoch"]
        tg.cancel_scope.cancel()


async def test_redis_killed_during_traffic_then_fanout_resumes_and_nothing_is_missed(
    tmp_path: Path,
) -> None:
    hub = HubSettings(gap_wait_seconds=0.1)
    with RedisServer(appendonly=True) as redis_server:
        async with (
            serve_nodes(2, redis_server.url, hub=hub) as (a, b),
            anyio.create_task_group() as tg,
        ):
            sender, near, far = Member("sender", a.url), Member("near", a.url), Member("far", b.url)
            for member in (sender, near, far):
                await member.connect()
                tg.start_soon(member.pump)
                await member.join(ROOM, ref=1)
            acked: list[int] = []
            outage_over = anyio.Event()

            async def traffic() -> None:
                while not outage_over.is_set():
                    acked.extend(await send_paced(sender, ROOM, 1, 50.0, f"t{len(acked)}"))
                acked.extend(await send_paced(sender, ROOM, 20, 50.0, "after"))

            async with anyio.create_task_group() as load:
                load.start_soon(traffic)
                await anyio.sleep(0.5)
                redis_server.kill()
                await anyio.sleep(1.0)
                redis_server.restart(empty=False)
                canary = b.node.context.get(HUB)._parts.canary
                assert canary is not None
                returned = canary.returned

                async def canary_back() -> bool:  # the fanout path works again
                    return not canary.deaf and canary.returned > returned

                await poll_until(canary_back, timeout_seconds=20)
                outage_over.set()
            await wait_delivered([near, far], ROOM, acked)
            check_room(ROOM, acked, [near, far])
            degraded = (await a.node.context.get(HUB).statistics()).degraded_sends
            # Sends during the outage reached the sender's own node live (no offset).
            live = [f for f in near.frames if f["type"] == "new_message" and "offset" not in f]
            assert len(live) == degraded
            tg.cancel_scope.cancel()


def _hub_node(redis_url: str, **hub: str) -> NodeProcess:
    env = {
        "SWITCHYARD_JWT_SECRET": SECRET,
        "SWITCHYARD_REDIS_URL": redis_url,
        **{f"SWITCHYARD_HUB_{k.upper()}": v for k, v in hub.items()},
    }
    return NodeProcess(env, cwd=ROOT)


async def test_a_sigkilled_nodes_presence_expires_within_two_heartbeats(
    redis_server: RedisServer,
) -> None:
    heartbeat = 0.5
    node = _hub_node(redis_server.url, presence_heartbeat_seconds=str(heartbeat))
    node.start()
    try:
        async with serve_nodes(1, redis_server.url) as (b,), anyio.create_task_group() as tg:
            doomed = Member("doomed", node.url.replace("http", "ws") + "/ws")
            await doomed.connect()
            tg.start_soon(doomed.pump)
            await doomed.join(ROOM, ref=1)
            hub = b.node.context.get(HUB)

            async def seen() -> bool:  # the other node's writer sends its changes in batches
                return {m.user_id for m in await hub.presence(ROOM)} == {"doomed"}

            await poll_until(seen, timeout_seconds=10)
            os.kill(node.pid, signal.SIGKILL)
            killed = time.monotonic()

            async def gone() -> bool:
                return not await hub.presence(ROOM)

            await poll_until(gone, timeout_seconds=10)
            assert time.monotonic() - killed <= 2 * heartbeat + 1.0
            tg.cancel_scope.cancel()
    finally:
        node.stop()


async def test_sigterm_sends_reconnect_then_1001_and_the_client_resumes_elsewhere(
    redis_server: RedisServer,
) -> None:
    node = _hub_node(redis_server.url)
    node.start()
    try:
        async with serve_nodes(1, redis_server.url) as (b,), anyio.create_task_group() as tg:
            mover = Member("mover", node.url.replace("http", "ws") + "/ws")
            sender = Member("sender", b.url)
            for member in (mover, sender):
                await member.connect()
                tg.start_soon(member.pump)
                await member.join(ROOM, ref=1)
            acked: list[int] = []
            stop = anyio.Event()

            async def traffic() -> None:
                while not stop.is_set():
                    acked.extend(await send_paced(sender, ROOM, 1, 50.0, f"m{len(acked)}"))

            async with anyio.create_task_group() as load:
                load.start_soon(traffic)
                await anyio.sleep(0.3)
                node.signal(signal.SIGTERM)
                reconnect = await mover.wait_for(lambda f: f["type"] == "reconnect")
                await mover.until(lambda: mover.closed is not None)
                assert mover.closed == (1001, "node_stopping")
                positions = reconnect["positions"]
                assert ROOM in positions and f"user:{mover.user}" in positions
                mover.positions[ROOM] = tuple(positions[ROOM])
                await mover.connect(b.url)
                tg.start_soon(mover.pump)
                joined = await mover.join(ROOM, ref=2, recover=True)
                assert joined["recovered"] is True, joined
                await anyio.sleep(0.3)
                stop.set()
            await wait_delivered([mover], ROOM, acked)
            check_room(ROOM, acked, [mover])
            tg.cancel_scope.cancel()
        assert node.wait() == 0
    finally:
        node.stop()
