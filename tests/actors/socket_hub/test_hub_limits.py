"""Limits over real Hypercorn and TCP: the rate limit, connections per user, rooms per
connection, and the idle timeout. Time is a :class:`ManualClock`: the token bucket refills
only when a test moves it."""

from __future__ import annotations

import pytest

from actors.socket_hub import HubSettings
from runtime.testing import ManualClock

from .hub_support import HubNode, hub_node

pytestmark = pytest.mark.e2e

ROOM = "public:lobby"


async def tick(node: HubNode, seconds: float) -> None:
    """Move the clock on and wait until the hub's sweeper has run and re-armed its timer."""
    clock = node.manual_clock
    before = clock.pending_timers
    clock.advance(seconds)
    await node.wait_for(lambda: clock.pending_timers >= before)


RATE = HubSettings(rate_per_second=1, rate_burst=5, rate_strikes=3, idle_timeout_seconds=10_000)


async def test_past_the_burst_frames_get_rate_limited_errors_then_a_4029_close() -> None:
    async with (
        hub_node(RATE, clock=ManualClock()) as node,
        node.client("bob") as bob,
        node.client("alice") as alice,
    ):
        await bob.join(ROOM)
        await alice.join(ROOM)  # frame 1 of the burst
        await bob.expect("user_joined_room")
        for _ in range(4):  # frames 2 to 5
            assert (await alice.request({"type": "ping"}))["type"] == "pong"
        for strike in (1, 2):
            error = await alice.request({"type": "ping"})
            assert (error["type"], error["code"]) == ("error", "rate_limited"), strike
            assert "slow down" in error["message"]
        await alice.send({"type": "send_message", "room": ROOM, "message": "spam", "ref": "s"})
        frames = await alice.frames_until_close()
        assert [(f["type"], f["code"], f["ref"]) for f in frames] == [
            ("error", "rate_limited", "s")
        ]
        assert (alice.ws.close_code, alice.ws.close_reason) == (4029, "rate_limited")
        assert (await bob.expect("user_left_room"))["user_id"] == "alice"
        await bob.quiet()  # the refused message never reached the room
        stats = await node.statistics()
        assert (stats.rate_limited, stats.rate_limit_closes, stats.messages) == (3, 1, 0)


async def test_the_bucket_refills_with_time_and_a_good_frame_resets_the_strikes() -> None:
    async with hub_node(RATE, clock=ManualClock()) as node, node.client("alice") as alice:
        for _ in range(5):
            await alice.quiet()
        for _ in range(2):
            assert (await alice.request({"type": "ping"}))["code"] == "rate_limited"
        node.advance(1.0)  # one token back
        await alice.quiet()  # strikes back to 0
        for _ in range(2):
            assert (await alice.request({"type": "ping"}))["code"] == "rate_limited"
        node.advance(3.0)
        for _ in range(3):
            await alice.quiet()
        assert alice.ws.close_code is None


async def test_the_rate_limit_is_per_connection() -> None:
    async with (
        hub_node(RATE, clock=ManualClock()) as node,
        node.client("alice") as first,
        node.client("alice") as second,
    ):
        for _ in range(5):
            await first.quiet()
        assert (await first.request({"type": "ping"}))["code"] == "rate_limited"
        for _ in range(5):
            await second.quiet()


async def test_a_users_connections_past_the_limit_are_refused_429() -> None:
    settings = HubSettings(connections_per_user=2)
    async with hub_node(settings, clock=ManualClock()) as node:
        async with node.client("alice"), node.client("alice") as second:
            status, body = await node.refused(headers=node.bearer("alice"))
            assert (status, body["error"]["code"]) == (429, "too_many_connections")
            async with node.client("bob") as bob:  # another user is not affected
                await bob.quiet()
            await second.close()
            await node.wait_for(lambda: len(node.connections("alice")) == 1)
            async with node.client("alice") as again:
                await again.quiet()
        stats = await node.statistics()
        assert stats.refused_connections == 1


async def test_a_connection_may_be_in_a_bounded_number_of_rooms_besides_its_own() -> None:
    settings = HubSettings(rooms_per_connection=2)
    async with hub_node(settings, clock=ManualClock()) as node, node.client("alice") as alice:
        await alice.join("public:a")
        await alice.join("public:b")
        error = await alice.request({"type": "join_room", "room": "public:c"})
        assert (error["type"], error["code"]) == ("error", "too_many_rooms")
        await alice.quiet()
        rejoined = await alice.request({"type": "join_room", "room": "public:a"})
        assert rejoined["type"] == "room_joined"  # a room it is in does not count twice
        await alice.expect("presence")
        await alice.request({"type": "leave_room", "room": "public:a"})
        joined, _ = await alice.join("public:c")
        assert joined["room"] == "public:c"
        assert set(node.connections("alice")[0].rooms) == {"user:alice", "public:b", "public:c"}


async def test_a_connection_silent_past_the_idle_timeout_is_closed() -> None:
    settings = HubSettings(idle_timeout_seconds=30)
    async with (
        hub_node(settings, clock=ManualClock()) as node,
        node.client("alice") as alice,
        node.client("bob") as bob,
    ):
        await tick(node, 20)
        await bob.quiet()  # bob speaks; alice stays silent
        await tick(node, 11)
        assert await alice.closed() == (1001, "idle_timeout")
        await bob.quiet()
        await node.wait_for(lambda: node.connections("alice") == [])
        assert (await node.statistics()).idle_closes == 1


async def test_a_first_frame_connection_past_the_limit_gets_an_error_then_4029() -> None:
    settings = HubSettings(connections_per_user=1)
    async with hub_node(settings, clock=ManualClock()) as node, node.client("alice") as alice:
        async with node.anonymous() as again:
            await again.send({"type": "auth", "token": node.token("alice")})
            frames = await again.frames_until_close()
            assert [(f["type"], f["code"]) for f in frames] == [("error", "too_many_connections")]
            assert again.ws.close_code == 4029
        await alice.quiet()


async def test_a_hub_that_is_not_running_refuses_the_upgrade_503_not_429() -> None:
    async with hub_node(clock=ManualClock()) as node:
        parts = node.hub._parts
        ref, parts.ref = parts.ref, None  # as between two incarnations of the hub actor
        try:
            status, body = await node.refused(headers=node.bearer("alice"))
        finally:
            parts.ref = ref
        assert (status, body["error"]["code"]) == (503, "unavailable")
        async with node.client("alice") as alice:
            await alice.quiet()
