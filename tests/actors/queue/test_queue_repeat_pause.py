"""A repeatable job keeps one execution per slot when a node stalls and comes back.

Two real nodes register the same job every second. One is frozen (SIGSTOP)
for longer than a slot's claim lives in Redis (two periods) while the other
runs the schedule alone, then thawed (SIGCONT): its scheduler wakes for the
slot it was waiting for when it froze, long past. That slot ran on the other
node already; it must not run again (a stalled node — a GC pause, a paused VM,
a blocked event loop — is the everyday case of a late scheduler).
"""

from __future__ import annotations

import functools
import logging
import signal
from collections import Counter

import anyio
import pytest

from runtime.testing import NodeProcess, RedisServer
from tests.actors.queue.nodes_queue_support import queue_node, records
from tests.actors.socket_hub.nodes_support import poll_until
from tests.apps.queue_app import TICK_EVERY_ENV, TICKS

pytestmark = [pytest.mark.redis, pytest.mark.e2e]
log = logging.getLogger(__name__)


async def _ready(nodes: list[NodeProcess]) -> None:
    for node in nodes:
        node.start(wait_ready=False)
    for node in nodes:
        await anyio.to_thread.run_sync(
            functools.partial(node.wait_for_log, "node listening on", timeout_seconds=45)
        )


async def test_a_stalled_node_does_not_rerun_a_slot_when_it_resumes() -> None:
    env = {"SWITCHYARD_QUEUE_CONCURRENCY": "default=2", TICK_EVERY_ENV: "1"}
    with RedisServer() as server:
        frozen, steady = queue_node(server.url, **env), queue_node(server.url, **env)
        try:
            await _ready([frozen, steady])

            async def ticks_at_least(count: int) -> bool:
                return len(await records(server.url, TICKS)) >= count

            await poll_until(functools.partial(ticks_at_least, 2), timeout_seconds=10)
            frozen.signal(signal.SIGSTOP)
            at_freeze = len(await records(server.url, TICKS))
            # Four slots on the steady node alone: the frozen one's next slot is over 2 s old.
            await poll_until(functools.partial(ticks_at_least, at_freeze + 4), timeout_seconds=15)
            frozen.signal(signal.SIGCONT)
            at_thaw = len(await records(server.url, TICKS))
            await poll_until(functools.partial(ticks_at_least, at_thaw + 3), timeout_seconds=15)
            ticks = await records(server.url, TICKS)
        finally:
            frozen.signal(signal.SIGCONT)
            steady.stop()
            frozen.stop()
    created = [float(entry[0]) for entry in ticks]  # <created_at> <pid> <job id> ...
    slots = Counter(round(at) for at in created)
    log.warning(
        "stall of a node: %d ticks over slots %d..%d, executions per node %s",
        len(ticks),
        min(slots),
        max(slots),
        dict(Counter(entry[1] for entry in ticks)),
    )
    late = [at for at in created if abs(at - round(at)) > 0.5 / 2]
    assert not late, f"ticks enqueued away from their slot: {late}"
    assert all(n == 1 for n in slots.values()), f"slots run twice: {slots}"
    assert sorted(slots) == list(range(min(slots), max(slots) + 1)), "a slot was missed"
    # The scenario happened: the thawed node woke for its stale slot (and let it go).
    assert any("skipped" in line for line in frozen.log), frozen.log[-10:]
