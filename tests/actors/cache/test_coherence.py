"""Coherence over its typed channel: what a foreign or broken payload does to a node."""

from __future__ import annotations

import logging

import msgspec
import pytest

from actors.cache._coherence import INVALIDATIONS

from .conftest import CacheEnv


async def test_undecodable_invalidations_are_skipped_and_later_ones_still_apply(
    l2_env: CacheEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="runtime.channel")
    async with l2_env.running_nodes(2) as nodes:
        a, b = nodes.caches
        await a.set("k", 1)
        await nodes.settle(1)
        assert await b.get("k") == 1
        await b.statistics()  # B's actor takes the L1 fill
        for payload in (b"\xc1", msgspec.msgpack.encode({"keys": ["k"]})):  # no ``node``
            await nodes.fanouts[0].publish(INVALIDATIONS.name, payload)
        await a.set("k", 2)
        await nodes.settle(4)  # the first set, the two bad payloads, the second set
        # B's listener survived the bad payloads: A's second invalidation reached its L1.
        assert await b.get("k") == 2
        stats = await b.statistics()
        assert (stats.invalidations_received, stats.coherence_resets) == (2, 0)
    warnings = [r.getMessage() for r in caplog.records if r.name == "runtime.channel"]
    assert any("skipped an undecodable payload" in message for message in warnings), warnings
